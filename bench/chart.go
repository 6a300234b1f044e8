package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chartSeries is one colour of bars: a ratio per chart row.
type chartSeries struct {
	name, color string
	vals        []float64
}

// chart draws the ratios as a horizontal grouped bar chart in plain SVG:
// sluice / best peer and sluice / direct per metric, or, when sluice was
// not measured, each peer / direct.
func (r *report) chart() []byte {
	var labels []string
	var series []chartSeries
	haveSluice := false
	for _, s := range r.res.systems {
		haveSluice = haveSluice || s == sluiceSystem
	}
	if haveSluice {
		series = []chartSeries{{name: "sluice / best peer", color: "#2b6cb0"}, {name: "sluice / direct", color: "#a0aec0"}}
	} else {
		series = []chartSeries{{name: "HAProxy / direct", color: "#c05621"}, {name: "nginx / direct", color: "#2f855a"}}
	}
	for _, sc := range r.res.scens {
		for _, m := range sc.metrics {
			var a, b float64
			if haveSluice {
				a, b = r.res.ratios(sc, m)
			} else {
				d := r.res.summary(directSystem.key, sc.key, m.key)
				a = ratio(r.res.summary(haproxySystem.key, sc.key, m.key), d)
				b = ratio(r.res.summary(nginxSystem.key, sc.key, m.key), d)
			}
			if math.IsNaN(a) && math.IsNaN(b) {
				continue
			}
			arrow := "↑"
			if m.lowerBetter {
				arrow = "↓"
			}
			labels = append(labels, fmt.Sprintf("%s: %s %s", sc.short, m.label, arrow))
			series[0].vals = append(series[0].vals, a)
			series[1].vals = append(series[1].vals, b)
		}
	}
	return drawBars("sluice benchmark ratios ("+r.start.UTC().Format("2006-01-02")+"; ↑ higher is better, ↓ lower is better)", labels, series)
}

// Chart geometry, in SVG user units.
const (
	chartW    = 960
	labelW    = 330
	plotX0    = labelW + 10
	plotX1    = chartW - 60
	barH      = 12
	rowGap    = 10
	headerH   = 64
	footerH   = 30
	chartCapX = 4.0 // ratios beyond this are drawn to the edge and labelled
)

// drawBars renders rows of grouped horizontal bars with a dashed line at 1.
func drawBars(title string, labels []string, series []chartSeries) []byte {
	rowH := barH*len(series) + rowGap
	h := headerH + rowH*len(labels) + footerH
	top := 1.5
	for _, s := range series {
		for _, v := range s.vals {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = max(top, math.Min(v*1.05, chartCapX))
			}
		}
	}
	top = math.Ceil(top*2) / 2
	capped := false
	for _, s := range series {
		for _, v := range s.vals {
			capped = capped || v > top
		}
	}
	x := func(v float64) float64 { return plotX0 + (plotX1-plotX0)*math.Min(v, top)/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, h, chartW, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, s := range series {
		lx := 10 + i*200
		fmt.Fprintf(&b, `<rect x="%d" y="36" width="12" height="12" fill="%s"/><text x="%d" y="46">%s</text>`+"\n", lx, s.color, lx+18, html.EscapeString(s.name))
	}
	bottom := h - footerH
	for t := 0.0; t <= top+1e-9; t += 0.5 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e2e8f0"/><text x="%.1f" y="%d" text-anchor="middle" fill="#4a5568">%.1f</text>`+"\n",
			x(t), headerH-4, x(t), bottom, x(t), bottom+16, t)
	}
	for i, label := range labels {
		y := headerH + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW, y+barH*len(series)/2+4, html.EscapeString(label))
		for j, s := range series {
			v := s.vals[i]
			by := y + j*barH
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue // no such ratio: direct has no proxy CPU, say
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, plotX0, by, x(v)-plotX0, barH-2, s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10">%.2f</text>`+"\n", math.Min(x(v), plotX1)+4, by+barH-3, v)
		}
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#1a202c" stroke-dasharray="4 3"/>`+"\n", x(1), headerH-4, x(1), bottom)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#4a5568">same as reference</text>`+"\n", x(1)+4, headerH-8)
	if capped {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#4a5568">bars stop at %.1f; the number is the ratio</text>`+"\n", plotX0, h-4, top)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

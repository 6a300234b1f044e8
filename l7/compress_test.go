package l7

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// TestCompress checks when a route with Compress gzips a response: only
// text above the size threshold, not already encoded, to clients that
// accept gzip; and that the gzipped body decodes to the backend's.
func TestCompress(t *testing.T) {
	big := strings.Repeat("sluice compresses text. ", 200)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := big
		switch r.URL.Path {
		case "/small":
			body = "tiny"
		case "/png":
			w.Header().Set("Content-Type", "image/png")
		case "/encoded":
			w.Header().Set("Content-Encoding", "br")
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(big[:100]))
			w.(http.Flusher).Flush()
			w.Write([]byte(big[100:]))
			return
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		w.Write([]byte(body))
	}))
	p := newPool(t, pool.Options{}, be.addr)
	px := startProxy(t, &Server{Upstreams: map[string]Upstream{"p": {Pool: p}},
		Routes: []route.Route{
			{Name: "plain", Match: route.Match{Path: "/plain"}, Pool: "p"},
			{Name: "gz", Pool: "p", Compress: true},
		}})
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	for _, tc := range []struct {
		path, accept string
		gzipped      bool
		want         string
	}{
		{"/page", "gzip, deflate, br", true, big},
		{"/stream", "br;q=1.0, gzip;q=0.5", true, big},
		{"/page", "", false, big},
		{"/page", "gzip;q=0", false, big},
		{"/small", "gzip", false, "tiny"},
		{"/png", "gzip", false, big},
		{"/encoded", "gzip", false, big},
		{"/plain", "gzip", false, big},
	} {
		t.Run(tc.path+" "+tc.accept, func(t *testing.T) {
			req, _ := http.NewRequest("GET", px.url+tc.path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept-Encoding", tc.accept)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			enc := resp.Header.Get("Content-Encoding")
			if got := enc == "gzip"; got != tc.gzipped {
				t.Fatalf("Content-Encoding %q, want gzipped %v", enc, tc.gzipped)
			}
			body := raw
			if tc.gzipped {
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatalf("gzip stream: %v", err)
				}
				if resp.ContentLength != -1 || resp.Header.Get("Vary") != "Accept-Encoding" || len(raw) >= len(big)/4 {
					t.Errorf("length %d, Vary %q, %d bytes compressed", resp.ContentLength, resp.Header.Get("Vary"), len(raw))
				}
				if resp.Header.Get("Accept-Ranges") != "" {
					t.Errorf("Accept-Ranges %q on a gzipped body", resp.Header.Get("Accept-Ranges"))
				}
				if tc.path == "/page" && resp.Header.Get("ETag") != `W/"v1"` {
					t.Errorf("ETag %q, want the weak W/\"v1\"", resp.Header.Get("ETag"))
				}
			}
			if string(body) != tc.want {
				t.Errorf("body %d bytes, want %d", len(body), len(tc.want))
			}
		})
	}
	rec := px.log.waitRequest(t, "/stream", byPath("/stream"))
	if n, _ := rec["bytes_out"].(float64); n <= 0 || n >= float64(len(big))/4 {
		t.Errorf("bytes_out %v, want the compressed size", rec["bytes_out"])
	}
}

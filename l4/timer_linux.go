package l4

import "time"

// A connection's one timer is its place in one of these lists, one per
// timeout. The timeout of a list is the same for all its connections, so a
// list kept in order of last activity (a touched connection moves to the
// back) has its next deadline at the front: no heap, no timer object per
// connection, and O(1) per touch and per expiry.
const (
	listPreamble = iota // waiting for the client's preamble
	listConnect         // connecting to a backend
	listOpen            // proxying; the idle timeout
	listHalf            // one side has sent FIN; the half-closed timeout
	nLists
	listNone = nLists
)

type connList struct {
	front, back *conn
	timeout     time.Duration
}

// setList moves c to the back of list i (listNone: out of every list), as
// last active now.
func (l *loop) setList(c *conn, i uint8) {
	if c.list != listNone {
		l.lists[c.list].remove(c)
	}
	c.list = i
	c.last = l.now
	if i != listNone {
		l.lists[i].push(c)
	}
}

// touch records that bytes moved on c, which pushes its timeout back.
func (l *loop) touch(c *conn) {
	if c.last == l.now {
		return
	}
	c.last = l.now
	if ls := &l.lists[c.list]; ls.back != c {
		ls.remove(c)
		ls.push(c)
	}
}

func (ls *connList) push(c *conn) {
	c.prev, c.next = ls.back, nil
	if ls.back != nil {
		ls.back.next = c
	} else {
		ls.front = c
	}
	ls.back = c
}

func (ls *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		ls.front = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		ls.back = c.prev
	}
	c.prev, c.next = nil, nil
}

// nextDeadline returns when the loop must next wake without an event: the
// earliest timeout, or the end of an accept back-off.
func (l *loop) nextDeadline() (time.Duration, bool) {
	var at time.Duration
	ok := false
	for i := range l.lists {
		if c := l.lists[i].front; c != nil {
			if d := c.last + l.lists[i].timeout; !ok || d < at {
				at, ok = d, true
			}
		}
	}
	if l.listening && l.acceptMore && !l.slotWait && l.acceptAt > l.now && (!ok || l.acceptAt < at) {
		at, ok = l.acceptAt, true
	}
	return at, ok
}

// expire ends (or, connecting, retries) the connections whose timeout has
// passed.
func (l *loop) expire() {
	for i := range l.lists {
		ls := &l.lists[i]
		for c := ls.front; c != nil && l.now-c.last >= ls.timeout; c = ls.front {
			l.timedOut(c)
		}
	}
}

// setListAt puts c in list i as last active at last, which may be before
// now (a connection adopted with its own idle time): in its place by last
// activity, so that the list's front is still the next to expire.
func (l *loop) setListAt(c *conn, i uint8, last time.Duration) {
	l.setList(c, i)
	if i == listNone || last >= c.last {
		return
	}
	ls := &l.lists[i]
	ls.remove(c)
	c.last = last
	after := ls.back
	for after != nil && after.last > last {
		after = after.prev
	}
	if after == nil {
		c.prev, c.next = nil, ls.front
		if ls.front != nil {
			ls.front.prev = c
		} else {
			ls.back = c
		}
		ls.front = c
		return
	}
	c.prev, c.next = after, after.next
	if after.next != nil {
		after.next.prev = c
	} else {
		ls.back = c
	}
	after.next = c
}

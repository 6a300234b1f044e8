package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// The old and the new process of an upgrade talk over a Unix stream
// socket (a socketpair, the new process's fd 3) in frames: a 4-byte
// big-endian length, then that many bytes of JSON. File descriptors go
// with a frame's length (SCM_RIGHTS), never with its JSON: the kernel
// attaches them to the bytes of the one sendmsg that carries them, and a
// reader that takes exactly those 4 bytes with recvmsg gets them; reads
// of exactly a frame's length never run into the next frame's.
//
//	new → old   readyMsg      after its configuration started, or it exits
//	old → new   handoffMsg    one per connection, its two sockets attached
//	old → new   handoffMsg    UDP sessions in batches, a socket each attached
//	old → new   (length 0)    the end of the connections
//	new → old   adoptedMsg    once it has adopted them

// maxFrame bounds a frame: a connection's pending bytes (a 64 KiB buffer
// or a 1 MiB pipe) in base64, with room to spare.
const maxFrame = 8 << 20

// readyMsg is the new process saying it serves.
type readyMsg struct {
	PID int `json:"pid"`
	// TCP names the TCP listeners it serves, which adopt connections.
	TCP []string `json:"tcp"`
	// UDP names the UDP listeners it serves on the sockets it inherited,
	// which adopt sessions.
	UDP []string `json:"udp,omitempty"`
}

// adoptedMsg is the new process's answer to the connections.
type adoptedMsg struct {
	Adopted int      `json:"adopted"`
	UDP     int      `json:"udp,omitempty"` // sessions adopted
	Errors  []string `json:"errors,omitempty"`
}

// writeFrame writes v as one frame, with fds attached.
func writeFrame(c *net.UnixConn, v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeRaw(c, b, fds...)
}

func writeRaw(c *net.UnixConn, b []byte, fds ...int) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(hdr[:], oob, nil)
	if err == nil && n != len(hdr) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("writing to the other process: %w", err)
	}
	if len(b) == 0 {
		// No write(2) of nothing: the reader may be done and gone.
		return nil
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("writing to the other process: %w", err)
	}
	return nil
}

// errEnd is readFrame's answer to a frame of length 0.
var errEnd = errors.New("end of frames")

// readFrame reads one frame into v and returns the descriptors that came
// with it (the caller owns them, even with an error).
func readFrame(c *net.UnixConn, v any) ([]int, error) {
	var hdr [4]byte
	oob := make([]byte, unix.CmsgSpace(4*udpBatch))
	n, oobn, _, _, err := c.ReadMsgUnix(hdr[:], oob)
	var fds []int
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if fs, e := unix.ParseUnixRights(&m); e == nil {
				fds = append(fds, fs...)
			}
		}
		if perr != nil && err == nil {
			err = perr
		}
	}
	if err == nil && n < len(hdr) {
		if n == 0 {
			err = io.EOF
		} else {
			_, err = io.ReadFull(c, hdr[n:])
		}
	}
	if err != nil {
		return fds, fmt.Errorf("reading from the other process: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size == 0 {
		return fds, errEnd
	}
	if size > maxFrame {
		return fds, fmt.Errorf("reading from the other process: a frame of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(c, b); err != nil {
		return fds, fmt.Errorf("reading from the other process: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fds, fmt.Errorf("reading from the other process: %w", err)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

package testenv

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer echoes every line back until the client closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line and reads it back within timeout.
func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err == nil && line != "ping\n" {
		err = io.ErrUnexpectedEOF
	}
	return time.Since(start), err
}

func TestProxyModes(t *testing.T) {
	t.Parallel()
	p := NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatalf("normal: %v", err)
	}
	if got := p.Conns(); got != 1 {
		t.Fatalf("Conns() = %d, want 1", got)
	}

	p.Slow(100 * time.Millisecond)
	if d, err := roundTrip(c, r, 2*time.Second); err != nil || d < 200*time.Millisecond {
		t.Fatalf("slow: %v after %v, want ≥ 200ms (two hops)", err, d)
	}

	p.BlackHole()
	if _, err := roundTrip(c, r, 150*time.Millisecond); err == nil {
		t.Fatal("black hole: an answer came back")
	}
	// A new connection is accepted but gets nothing either.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("black hole refused a connection: %v", err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	if _, err := roundTrip(c2, r2, 150*time.Millisecond); err == nil {
		t.Fatal("black hole: a new connection got an answer")
	}

	p.Restore()
	// What was held is delivered: the earlier pings come back first.
	for i, cr := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c, r}, {c2, r2}} {
		_ = cr.c.SetDeadline(time.Now().Add(time.Second))
		if line, err := cr.r.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("restore: connection %d: held data not delivered: %q %v", i+1, line, err)
		}
	}
	if d, err := roundTrip(c2, r2, time.Second); err != nil || d > 100*time.Millisecond {
		t.Fatalf("restore: %v after %v", err, d)
	}

	p.Cut()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("cut: the connection still reads")
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_ = c3.SetDeadline(time.Now().Add(time.Second))
		if _, err := c3.Read(make([]byte, 1)); err == nil {
			t.Fatal("cut: a new connection was served")
		}
		_ = c3.Close()
	}
	deadline := time.Now().Add(time.Second)
	for p.Conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.Conns(); got != 0 {
		t.Fatalf("after Cut, Conns() = %d", got)
	}
}

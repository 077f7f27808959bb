package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ServeReadTimeout serves h on a loopback port with a real http.Server
// whose ReadTimeout is d (the time a client has to send its whole request)
// and returns its address. The server is closed when the test ends.
func ServeReadTimeout(t testing.TB, h http.Handler, d time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadTimeout: d}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// Stalled is what a server answered a request whose body stalled.
type Stalled struct {
	// Raw is every byte the server sent before it closed the connection
	// (or before the wait ended): "" when it answered nothing.
	Raw string
	// Response is Raw read as a response; nil when Raw is empty.
	Response *http.Response
	// Body is the response's body.
	Body string
}

// Stall sends, on a new connection to addr, head (a request's line and
// headers, each line ending "\r\n", without the blank line that ends
// them) and then part, the first bytes of a body that head announces
// longer with its Content-Length; then it sends nothing more and reads
// what the server answers until it closes the connection or wait passes.
func Stall(t testing.TB, addr, head, part string, wait time.Duration) Stalled {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head+"\r\n"+part); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	raw, _ := io.ReadAll(c) // a closed connection or the deadline ends it
	s := Stalled{Raw: string(raw)}
	if s.Raw == "" {
		return s
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s.Raw)), nil)
	if err != nil {
		t.Fatalf("not an HTTP response (%v): %q", err, s.Raw)
	}
	body, _ := io.ReadAll(resp.Body)
	s.Response, s.Body = resp, string(body)
	return s
}

package statuswriter_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/statuswriter"
)

type observer struct {
	codes    []int
	hijacked bool
	unsent   int
}

func (o *observer) Sending(h http.Header, code int) {
	if len(o.codes) == 0 {
		h.Set("X-Seen", "1") // what the observer adds goes out with the status
	}
	o.codes = append(o.codes, code)
}
func (o *observer) Sent() bool            { return len(o.codes) > 0 }
func (o *observer) NotSent(h http.Header) { o.codes = nil; o.unsent++; h.Del("X-Seen") }
func (o *observer) Hijacked()             { o.hijacked = true }

func TestStatusIsObservedBeforeItGoesOut(t *testing.T) {
	for name, send := range map[string]func(w http.ResponseWriter){
		"WriteHeader": func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated) },
		"Write":       func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) },
		"ReadFrom":    func(w http.ResponseWriter) { _, _ = w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")) },
		"Flush":       func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
	} {
		rec := httptest.NewRecorder()
		o := &observer{}
		w := &statuswriter.Writer{W: rec, O: o}
		send(w)
		if len(o.codes) == 0 || rec.Header().Get("X-Seen") != "1" {
			t.Errorf("%s: observed %v, header %v", name, o.codes, rec.Header())
		}
	}
}

type noFlush struct{ http.ResponseWriter }

// A flush that cannot flush sent nothing: the observer is told so.
func TestFailedFlushIsNotSent(t *testing.T) {
	o := &observer{}
	w := &statuswriter.Writer{W: noFlush{httptest.NewRecorder()}, O: o}
	if err := w.FlushError(); !errors.Is(err, http.ErrNotSupported) {
		t.Fatalf("FlushError = %v", err)
	}
	if o.unsent != 1 || o.Sent() {
		t.Fatalf("unsent %d, sent %v", o.unsent, o.Sent())
	}
}

type hijacker struct {
	http.ResponseWriter
	conn net.Conn
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.conn, nil, nil }

func TestHijackIsObserved(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	o := &observer{}
	w := &statuswriter.Writer{W: hijacker{httptest.NewRecorder(), a}, O: o}
	if _, _, err := http.NewResponseController(w).Hijack(); err != nil || !o.hijacked {
		t.Fatalf("Hijack: %v, observed %v", err, o.hijacked)
	}
	if w.Unwrap() == nil {
		t.Fatal("Unwrap returned nil")
	}
}

// A Watch keeps the first final status: not an interim 1xx, 101 after a
// hijack, and nothing after a flush that sent nothing.
func TestWatchKeepsTheFirstFinalStatus(t *testing.T) {
	var v statuswriter.Watch
	w := v.Watch(httptest.NewRecorder())
	w.WriteHeader(http.StatusEarlyHints)
	w.WriteHeader(http.StatusCreated)
	w.WriteHeader(http.StatusTeapot)
	if v.Status != http.StatusCreated {
		t.Fatalf("status %d, want 201", v.Status)
	}
	if w = v.Watch(noFlush{httptest.NewRecorder()}); v.Status != 0 {
		t.Fatalf("a new watch starts at %d", v.Status)
	}
	if err := http.NewResponseController(w).Flush(); err == nil || v.Status != 0 {
		t.Fatalf("a failed flush: %v, status %d", err, v.Status)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w = v.Watch(hijacker{httptest.NewRecorder(), a})
	if _, _, err := http.NewResponseController(w).Hijack(); err != nil || v.Status != http.StatusSwitchingProtocols {
		t.Fatalf("Hijack: %v, status %d", err, v.Status)
	}
}

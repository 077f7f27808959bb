// Package statuswriter wraps an http.ResponseWriter so that an Observer
// learns, before it goes out, the first final status a handler sends, and
// learns of a hijack. Flusher, Hijacker and io.ReaderFrom keep working;
// Unwrap lets http.ResponseController reach the rest. keyward settles a
// call's credits on the status it observes.
package statuswriter

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// Observer is told what the handler sends, from the goroutine serving the
// request.
type Observer interface {
	// Sending is called before a status goes out: code is the status, h
	// the header about to be sent with it. Only the first final status
	// matters to the observer; it may be called again.
	Sending(h http.Header, code int)
	// Sent reports whether a status was observed.
	Sent() bool
	// NotSent undoes Sending after a flush that failed: nothing went out.
	NotSent(h http.Header)
	// Hijacked is called once the handler took the connection over.
	Hijacked()
}

// Writer is W seen through O. Embed it (it needs no allocation) and give
// a pointer to it to the handler.
type Writer struct {
	W http.ResponseWriter
	O Observer
}

// Header returns W's header.
func (w *Writer) Header() http.Header { return w.W.Header() }

// WriteHeader tells O, then writes the status.
func (w *Writer) WriteHeader(code int) {
	w.O.Sending(w.W.Header(), code)
	w.W.WriteHeader(code)
}

// Write sends a 200 first if nothing was sent, then p.
func (w *Writer) Write(p []byte) (int, error) {
	w.implicitOK()
	return w.W.Write(p)
}

func (w *Writer) implicitOK() {
	if !w.O.Sent() {
		w.O.Sending(w.W.Header(), http.StatusOK)
	}
}

// ReadFrom implements io.ReaderFrom, so that io.Copy keeps the underlying
// writer's fast path (sendfile).
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	w.implicitOK()
	if rf, ok := w.W.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.W}, src)
}

type writerOnly struct{ io.Writer }

// Flush implements http.Flusher.
func (w *Writer) Flush() { _ = w.FlushError() }

// FlushError flushes as http.ResponseController does, returning its error
// (http.ErrNotSupported when W cannot flush). Flushing sends the status.
func (w *Writer) FlushError() error {
	first := !w.O.Sent()
	w.implicitOK()
	err := http.NewResponseController(w.W).Flush()
	if err != nil && first { // nothing was sent after all
		w.O.NotSent(w.W.Header())
	}
	return err
}

// Hijack implements http.Hijacker and tells O.
func (w *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.W).Hijack()
	if err == nil {
		w.O.Hijacked()
	}
	return conn, brw, err
}

// Unwrap returns W, for http.ResponseController.
func (w *Writer) Unwrap() http.ResponseWriter { return w.W }

// Final reports whether code ends a response: any status but the 1xx
// interim ones, except 101 Switching Protocols, after which the
// connection is no longer HTTP. An Observer keeps the first final status.
func Final(code int) bool { return code >= 200 || code == http.StatusSwitchingProtocols }

// First is an Observer that keeps the first final status sent: Status, 0
// while none was, 101 after a hijack.
type First struct{ Status int }

// Sending keeps code if it is the first final status.
func (f *First) Sending(_ http.Header, code int) {
	if f.Status == 0 && Final(code) {
		f.Status = code
	}
}

// Sent reports whether a final status was sent.
func (f *First) Sent() bool { return f.Status != 0 }

// NotSent forgets the status: nothing went out.
func (f *First) NotSent(http.Header) { f.Status = 0 }

// Hijacked keeps 101: the connection is no longer HTTP.
func (f *First) Hijacked() { f.Status = http.StatusSwitchingProtocols }

// Watch is a Writer that keeps the first final status it sends (First):
// embed it (no allocation) and write through Watch.
type Watch struct {
	Writer
	First
}

// Watch returns w seen through the Watch, its status not yet sent.
func (v *Watch) Watch(w http.ResponseWriter) http.ResponseWriter {
	v.First, v.Writer = First{}, Writer{W: w, O: &v.First}
	return &v.Writer
}

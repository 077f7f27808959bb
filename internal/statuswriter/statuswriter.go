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

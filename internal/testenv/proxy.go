package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy between a client under test and a real server, so
// that a test can inject faults without touching a server that other tests
// share:
//
//   - Cut: the server is gone (connections reset, new ones refused);
//   - BlackHole: the network drops everything (connections stay open,
//     nothing arrives, nothing is answered);
//   - Slow: every chunk of data is delayed;
//   - Restore: back to normal.
//
// Modes apply at once to open connections as well as new ones.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cut     bool
	hole    bool
	delay   time.Duration
	closed  bool
	changed chan struct{} // closed and replaced on every mode change
	conns   map[net.Conn]bool
	clients int // open client-side connections
	wg      sync.WaitGroup

	accepted atomic.Int64
}

// NewProxy listens on a free loopback port and forwards to target. It is
// closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]bool), changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address to give the client instead of the server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// changeLocked wakes every connection waiting on the mode. p.mu is held.
func (p *Proxy) changeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Cut closes every open connection and refuses new ones (they are
// accepted and closed at once, as a dead server's would be reset).
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.changeLocked()
}

// BlackHole stops forwarding in both directions, as a network partition
// does: open connections stay open but nothing they send arrives and
// nothing comes back; new connections are accepted and read from, but
// never reach the server. Data sent meanwhile is held, not lost (TCP
// would retransmit it): after Restore it is delivered to whoever is still
// connected. A client notices only through its own timeouts.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = true
	p.changeLocked()
}

// Slow delays every chunk of data, in both directions, by d: a slow or
// distant server. Slow(0) ends the delay.
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
	p.changeLocked()
}

// Restore ends Cut, BlackHole and Slow: new connections go through again
// and held data flows.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hole, p.delay = false, false, 0
	p.changeLocked()
}

// Conns returns the number of client connections open through the proxy:
// a connection-leak check for the client's pool.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients
}

// Accepted returns how many connections the proxy has accepted in all.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}

// wait blocks while the proxy black-holes, then for the delay Slow set
// (cut short by any mode change); ok is false once the proxy is cut or
// closed.
func (p *Proxy) wait() (ok bool) {
	for {
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			return false
		}
		d, hole, ch := p.delay, p.hole, p.changed
		p.mu.Unlock()
		if hole {
			<-ch
			continue
		}
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-ch:
			t.Stop() // the mode changed: look again
		}
	}
}

// track adds c to the open connections unless the proxy is cut.
func (p *Proxy) track(c net.Conn, client bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	p.conns[c] = client
	if client {
		p.clients++
	}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if client, ok := p.conns[c]; ok {
		delete(p.conns, c)
		if client {
			p.clients--
		}
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(c, true) {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects one client to the server, once the proxy lets it.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	// In a black hole the client is accepted but its server connection
	// waits; what it sends waits in the socket buffers.
	if !p.wait() {
		_ = c.Close()
		p.untrack(c)
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(s, false) {
		if s != nil {
			_ = s.Close()
		}
		_ = c.Close()
		p.untrack(c)
		return
	}
	p.wg.Add(2)
	go p.pipe(c, s)
	go p.pipe(s, c)
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	p.untrack(dst)
	p.untrack(src)
}

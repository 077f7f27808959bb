package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
)

// binDir holds the keyward command built for the tests; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyward-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildKeyward builds the keyward command once per test binary.
var buildKeyward = sync.OnceValues(func() (string, error) {
	dir := binDir
	bin := filepath.Join(dir, "keyward")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/keyward/keyward/cmd/keyward").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building keyward: %v\n%s", err, out)
	}
	return bin, nil
})

func keywardBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildKeyward()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// chromium returns the path of the Chromium browser: in CI its absence
// fails the test (.ci/run installs the Debian package), elsewhere it skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testenv.InCI() {
		t.Fatal("no Chromium on PATH; CI must run the browser test (apt-get install -y chromium)")
	}
	t.Skip("no Chromium on PATH: install it (apt-get install -y chromium) to run the browser test")
	return ""
}

// run runs the keyward command, which must succeed, and returns its stdout.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(keywardBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("keyward %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// server is a running `keyward serve`.
type server struct {
	base  string // http://127.0.0.1:PORT
	login string // the one-time sign-in link
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var loginLine = regexp.MustCompile(`(http://127\.0\.0\.1:\d+/dashboard/login\?code=\S+)`)

// serve starts `keyward serve` with args on a free loopback port, and
// stops it when the test ends.
func serve(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(keywardBinary(t), append(args, "serve", "--addr", "127.0.0.1:0", "--login-link")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &syncBuffer{}}
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := loginLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case link, ok := <-found:
		if !ok {
			t.Fatalf("serve printed no login link; its log:\n%s", s.logs.String())
		}
		s.login = link
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start; its log:\n%s", s.logs.String())
	}
	s.base, _, _ = strings.Cut(s.login, "/dashboard/")
	return s
}

// call makes a request to the demo API with key and returns the status
// and the envelope's details.reason (for a failure).
func (s *server) call(t *testing.T, method, path, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env struct {
		Error struct {
			Details struct {
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &env)
	return resp.StatusCode, env.Error.Details.Reason
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

package main

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var adminTokenLine = regexp.MustCompile(`(?m)^    (kwadmin_[A-Za-z0-9]+)$`)

// `keyward admin token create` prints a token once and keeps only its
// hash, in a file only its owner reads; serve mounts the admin API with
// it, and refuses what it cannot use.
func TestAdminTokens(t *testing.T) {
	c := newCLI(t)
	file := filepath.Join(t.TempDir(), "admin-tokens")
	out, errs, code := c.run("admin", "token", "create", "--admin-tokens", file, "--name", "ops team")
	require.Equal(t, 0, code, errs)
	m := adminTokenLine.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	token := m[1]
	kept, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.NotContains(t, string(kept), token, "the file keeps a hash")
	assert.Contains(t, string(kept), "ops team")
	st, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	for _, bad := range [][]string{
		{"admin", "token", "create", "--name", "x"},
		{"admin", "token", "create", "--admin-tokens", file, "--name", ""},
		{"admin", "token", "create", "--admin-tokens", file, "--name", "tab\there"},
		{"admin"},
		{"serve", "--login-link"},
	} {
		_, errs, code := c.run(bad...)
		assert.Equal(t, 2, code, "keyward %v: %s", bad, errs)
	}
	_, errs, code = c.run("serve", "--admin-tokens", filepath.Join(t.TempDir(), "missing"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "keyward admin token create")

	s := c.serve("--admin-tokens", file)
	for tok, want := range map[string]int{token: 200, "": 401, token + "x": 401} {
		req, err := http.NewRequest("GET", s.base+"/admin/v1/orgs", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, string(body))
	}
	assert.False(t, strings.Contains(s.logs.String(), token), "the token is never logged")
}

// `keyward demo` prints the dashboard's one-time sign-in link and an
// admin token beside its curl commands; both work, the link once.
func TestDemoPrintsTheDashboard(t *testing.T) {
	out := startDemo(t)
	link := regexp.MustCompile(`http://127\.0\.0\.1:\d+/dashboard/login\?code=\S+`)
	login := link.FindString(out)
	require.NotEmpty(t, login, out)
	token := regexp.MustCompile(`Bearer (kwadmin_[A-Za-z0-9]+)`).FindStringSubmatch(out)
	require.NotNil(t, token, out)
	base, _, _ := strings.Cut(login, "/dashboard/")

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	// A browser opens the link's page, whose script sends its form.
	useLink := func(browser *http.Client) (int, string) {
		resp, err := browser.Get(login)
		require.NoError(t, err)
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		field := func(name string) string {
			m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(string(page))
			require.NotNil(t, m, "no %s in %s", name, page)
			return html.UnescapeString(m[1])
		}
		resp, err = browser.PostForm(base+"/dashboard/login", url.Values{"csrf": {field("csrf")}, "code": {field("code")}})
		require.NoError(t, err)
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(page)
	}
	status, page := useLink(&http.Client{Jar: jar})
	assert.Equal(t, 200, status)
	assert.Contains(t, page, ">demo</a>", "the demo's organization is listed")
	otherJar, err := cookiejar.New(nil)
	require.NoError(t, err)
	status, _ = useLink(&http.Client{Jar: otherJar})
	assert.Equal(t, 401, status, "the link works once")

	req, err := http.NewRequest("GET", base+"/admin/v1/orgs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token[1])
	api, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	api.Body.Close()
	assert.Equal(t, 200, api.StatusCode)
}

// startDemo runs `keyward demo` on a free port until the test ends (then
// stops it with SIGINT) and returns what it printed before serving.
func startDemo(t *testing.T) string {
	t.Helper()
	cmd := newCLI(t).cmd("demo", "--addr", "127.0.0.1:0")
	tmp := t.TempDir()
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Stopped as a user stops it (Ctrl-C), so that it removes its
	// temporary directory: a kill would leave one behind at every run.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("keyward demo did not stop within 10 s of SIGINT")
		}
		left, _ := filepath.Glob(filepath.Join(tmp, "keyward-demo-*"))
		assert.Empty(t, left, "the demo removes its directory when stopped")
	})
	var out strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		n, err := stdout.Read(buf)
		require.NoError(t, err, "demo stopped; it printed:\n%s", out.String())
		out.Write(buf[:n])
	}
	return out.String()
}

// TestDemoCurlBlock: the demo's three curl commands, pasted as one block
// into a shell, all succeed, and each answer is a line of JSON. On the
// free plan (1 request/s) the second and third got 429.
func TestDemoCurlBlock(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	out := startDemo(t)
	_, block, ok := strings.Cut(out, "Try it:")
	require.True(t, ok, out)
	block, _, ok = strings.Cut(block, "Metrics")
	require.True(t, ok, out)
	require.Equal(t, 3, strings.Count(block, "curl -s"), block)
	sh := exec.Command("sh", "-c", strings.ReplaceAll(block, "curl -s", curl+" -s"))
	answers, err := sh.Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(answers), "\n"), "\n")
	require.Len(t, lines, 3, "each body ends with a newline:\n%s", answers)
	for _, line := range lines {
		var body struct {
			Success bool `json:"success"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &body), line)
		assert.True(t, body.Success, line)
	}
}

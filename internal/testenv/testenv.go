// Package testenv gives tests the real servers they need. Outside CI a
// missing server skips the test with a message saying how to run it; in CI
// (CI=true) it fails the test, so that nothing passes by not running.
package testenv

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// PostgresDSN returns KEYWARD_TEST_POSTGRES_DSN.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	return need(t, "KEYWARD_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// RedisURL returns KEYWARD_TEST_REDIS_URL.
func RedisURL(t testing.TB) string {
	t.Helper()
	return need(t, "KEYWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
}

func need(t testing.TB, name, example string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if InCI() {
		t.Fatalf("%s is not set; CI must run this test against a real server", name)
	}
	t.Skipf("set %s (for example %s) to run this test against a real server", name, example)
	return ""
}

// Unreachable ends the test when a server that was named cannot be
// reached: a failure in CI, a skip elsewhere.
func Unreachable(t testing.TB, what string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s unreachable in CI: %v", what, err)
	}
	t.Skipf("%s unreachable: %v", what, err)
}

// alone names the test a process was started to run by itself.
const alone = "KEYWARD_TEST_ALONE"

// Alone reports whether t runs in a process of its own. If not, it runs
// t there (the test binary again, that test only) and fails t with the
// output unless it passed, or skips t if it skipped there (a server that
// is not configured); the caller then returns. For a test that changes
// what cannot be changed back (a global OpenTelemetry SDK), or that must
// not see other tests' goroutines.
func Alone(t *testing.T) bool {
	t.Helper()
	if os.Getenv(alone) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), alone+"="+t.Name())
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil && strings.Contains(string(out), "--- PASS: "+t.Name()):
	case err == nil && strings.Contains(string(out), "--- SKIP: "+t.Name()):
		t.Skipf("%s skipped in a process of its own:\n%s", t.Name(), out)
	default:
		t.Fatalf("%s, in a process of its own: %v\n%s", t.Name(), err, out)
	}
	return false
}

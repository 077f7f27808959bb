// Package testenv gives tests the real servers they need. Outside CI a
// missing server skips the test with a message saying how to run it; in CI
// (CI=true) it fails the test, so that nothing passes by not running.
package testenv

import (
	"os"
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

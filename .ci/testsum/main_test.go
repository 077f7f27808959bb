package main

import (
	"strings"
	"testing"
)

func ev(action, pkg, test, output string) string {
	e := `{"Action":"` + action + `","Package":"` + pkg + `"`
	if test != "" {
		e += `,"Test":"` + test + `"`
	}
	if output != "" {
		e += `,"Output":"` + strings.ReplaceAll(strings.ReplaceAll(output, "\t", `\t`), "\n", `\n`) + `"`
	}
	return e + "}"
}

func TestPassingRunListsSkipsWithReasons(t *testing.T) {
	in := strings.Join([]string{
		"== sqlstore",
		// race pass
		ev("start", "m/sqlstore", "", ""),
		ev("output", "m/sqlstore", "", "-test.shuffle 1\n"),
		ev("run", "m/sqlstore", "TestPG", ""),
		ev("output", "m/sqlstore", "TestPG", "=== RUN   TestPG\n"),
		ev("output", "m/sqlstore", "TestPG", "    helpers_test.go:30: set KEYWARD_TEST_POSTGRES_DSN to run this test against a real server\n"),
		ev("output", "m/sqlstore", "TestPG", "--- SKIP: TestPG (0.00s)\n"),
		ev("skip", "m/sqlstore", "TestPG", ""),
		ev("output", "m/sqlstore", "TestAllocs", "--- SKIP: TestAllocs (0.00s)\n    a_test.go:1: allocation counts differ under the race detector\n"),
		ev("skip", "m/sqlstore", "TestAllocs", ""),
		ev("output", "m/sqlstore", "TestOK", "    ok_test.go:9: chatter of a passing test\n"),
		ev("pass", "m/sqlstore", "TestOK", ""),
		ev("output", "m/sqlstore", "", "PASS\n"),
		ev("output", "m/sqlstore", "", "ok  \tm/sqlstore\t1.0s\n"),
		ev("pass", "m/sqlstore", "", ""),
		ev("output", "m/empty", "", "?   \tm/empty\t[no test files]\n"),
		ev("skip", "m/empty", "", ""),
		// allocation pass
		ev("pass", "m/sqlstore", "TestAllocs", ""),
		ev("output", "m/sqlstore", "", "ok  \tm/sqlstore\t0.1s\n"),
		ev("pass", "m/sqlstore", "", ""),
	}, "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in), &out); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"== sqlstore\n",
		"ok  \tm/sqlstore\t1.0s\n",
		"?   \tm/empty\t[no test files]\n",
		"1 tests skipped:\n  set KEYWARD_TEST_POSTGRES_DSN to run this test against a real server\n    m/sqlstore: TestPG\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"chatter", "TestAllocs", "-test.shuffle", "PASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q, which go test without -v would not show:\n%s", unwanted, got)
		}
	}
}

func TestFailureShowsTheFailingTestAndExits1(t *testing.T) {
	in := strings.Join([]string{
		ev("output", "m/core", "", "-test.shuffle 7\n"),
		ev("output", "m/core", "TestOK", "    chatter\n"),
		ev("pass", "m/core", "TestOK", ""),
		ev("output", "m/core", "TestBad", "=== RUN   TestBad\n"),
		ev("output", "m/core", "TestBad", "    bad_test.go:3: want 1, got 2\n"),
		ev("output", "m/core", "TestBad", "--- FAIL: TestBad (0.00s)\n"),
		ev("fail", "m/core", "TestBad", ""),
		ev("output", "m/core", "", "FAIL\n"),
		ev("output", "m/core", "", "FAIL\tm/core\t0.1s\n"),
		ev("fail", "m/core", "", ""),
	}, "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in), &out); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	got := out.String()
	for _, want := range []string{"-test.shuffle 7", "want 1, got 2", "--- FAIL: TestBad", "FAIL\tm/core"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chatter") {
		t.Errorf("output shows a passing test's log:\n%s", got)
	}
}

func TestBuildFailureExits1(t *testing.T) {
	in := strings.Join([]string{
		`{"ImportPath":"m/core","Action":"build-output","Output":"core.go:1:1: syntax error\n"}`,
		`{"ImportPath":"m/core","Action":"build-fail"}`,
		ev("output", "m/core", "", "FAIL\tm/core [build failed]\n"),
		ev("fail", "m/core", "", ""),
	}, "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in), &out); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "syntax error") {
		t.Errorf("the build error is not shown:\n%s", out.String())
	}
}

// A run that tested nothing (no module found, a pattern matching nothing)
// must not pass.
func TestNothingTestedExits1(t *testing.T) {
	var out strings.Builder
	if code := run(strings.NewReader("== .\n"), &out); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
}

// make says FAIL for a module whose go vet failed (vet writes to stderr,
// not through testsum): the run fails even if every test before passed.
func TestModuleFailureExits1(t *testing.T) {
	in := strings.Join([]string{
		ev("output", "m/core", "", "ok  \tm/core\t0.1s\n"),
		ev("pass", "m/core", "", ""),
		"FAIL adapters/gin: go vet or go test failed",
	}, "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in), &out); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "PASS") {
		t.Errorf("a failed run says PASS:\n%s", out.String())
	}
}

func TestWrapKeepsLinesShort(t *testing.T) {
	got := wrap("    m/pkg: ", []string{"TestAlpha", "TestBeta", "TestGamma"}, 30)
	want := "    m/pkg: TestAlpha,\n      TestBeta, TestGamma\n"
	if got != want {
		t.Errorf("wrap = %q, want %q", got, want)
	}
	if got := wrap("    m/pkg: ", []string{"TestOne"}, 10); got != "    m/pkg: TestOne\n" {
		t.Errorf("wrap of one long name = %q", got)
	}
}

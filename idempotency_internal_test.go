package keyward

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

func TestIdempotencyKey(t *testing.T) {
	for _, c := range []struct {
		h    http.Header
		want string
		err  error
	}{
		{http.Header{}, "", nil},
		{http.Header{"Idempotency-Key": {"abc_1-2"}}, "abc_1-2", nil},
		{http.Header{"X-Idempotency-Key": {"abc"}}, "abc", nil},
		{http.Header{"Idempotency-Key": {"abc"}, "X-Idempotency-Key": {"abc"}}, "abc", nil},
		{http.Header{"Idempotency-Key": {"abc"}, "X-Idempotency-Key": {"abd"}}, "", errIdemConflict},
		{http.Header{"Idempotency-Key": {"a", "a"}}, "", errIdemConflict},
		{http.Header{"Idempotency-Key": {"a b"}}, "", errIdemMalformed},
		{http.Header{"Idempotency-Key": {strings.Repeat("a", 65)}}, "", errIdemMalformed},
		{http.Header{"Idempotency-Key": {""}}, "", errIdemMalformed},
	} {
		got, err := idemKey(c.h)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("Key(%v) = %q, %v; want %q, %v", c.h, got, err, c.want, c.err)
		}
	}
}

func TestIdempotencyDigestHidesTheKey(t *testing.T) {
	d := idemDigest("triq_secret")
	if len(d) != 64 || strings.Contains(d, "secret") || d != idemDigest("triq_secret") || d == idemDigest("triq_secreu") {
		t.Fatalf("Digest = %q", d)
	}
}

func TestIdempotencyFingerprint(t *testing.T) {
	r1 := httptest.NewRequest(http.MethodPost, "/v1/x?a=1", strings.NewReader("body"))
	r2 := httptest.NewRequest(http.MethodPost, "/v1/x?a=1", strings.NewReader("body"))
	r3 := httptest.NewRequest(http.MethodPost, "/v1/x?a=2", strings.NewReader("body"))
	f1, err := idemFingerprint(r1, 10)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := idemFingerprint(r2, 10)
	f3, _ := idemFingerprint(r3, 10)
	if f1 != f2 || f1 == f3 {
		t.Fatal("fingerprints do not follow the request")
	}
	if b, _ := io.ReadAll(r1.Body); string(b) != "body" {
		t.Fatalf("the body given back is %q", b)
	}
	// No limit at all (MaxInt64) keeps the body too: the limit does not overflow.
	open := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("body"))
	if _, err := idemFingerprint(open, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(open.Body); string(b) != "body" {
		t.Fatalf("the body given back under MaxInt64 is %q", b)
	}
	if _, err := idemFingerprint(httptest.NewRequest(http.MethodPost, "/", strings.NewReader("12345")), 4); !errors.Is(err, errIdemBodyTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	bad := httptest.NewRequest(http.MethodPost, "/", nil)
	bad.Body = io.NopCloser(iotest.ErrReader(errors.New("reset")))
	if _, err := idemFingerprint(bad, 4); !errors.Is(err, errIdemBodyUnreadable) {
		t.Fatalf("unreadable: %v", err)
	}
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// An Idempotency-Key is accepted exactly when it is 1 to 64 of
// [A-Za-z0-9_-], under either header name.
func FuzzIdempotencyKey(f *testing.F) {
	for _, seed := range []string{"", "a", "order-42_a", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a b", "a.b", "ключ", "a\x00b", "a\r\nb", "\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, k string) {
		want := keyPattern.MatchString(k)
		for _, name := range []string{HeaderIdempotencyKey, HeaderXIdempotencyKey} {
			got, err := idemKey(http.Header{name: {k}})
			if (err == nil) != want || err == nil && got != k || err != nil && !errors.Is(err, errIdemMalformed) {
				t.Fatalf("%s: %q: %q, %v; want valid = %v", name, k, got, err, want)
			}
		}
	})
}

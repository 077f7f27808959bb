package envelope_test

import (
	"testing"

	"github.com/keyward/keyward/internal/envelope"
)

func TestEncode(t *testing.T) {
	b, ok := envelope.Encode("rate_limited", "Slow down.", map[string]any{"limit": 60},
		envelope.Meta{GeneratedAt: "2026-01-19T10:30:00Z", RequestID: "r1", Version: "1.0.0"})
	want := `{"success":false,"error":{"code":"rate_limited","message":"Slow down.","details":{"limit":60}},` +
		`"meta":{"generatedAt":"2026-01-19T10:30:00Z","requestId":"r1","version":"1.0.0"}}` + "\n"
	if !ok || string(b) != want {
		t.Fatalf("Encode = %s", b)
	}
	b, _ = envelope.Encode("internal_error", "x", nil, envelope.Meta{})
	if want := `{"success":false,"error":{"code":"internal_error","message":"x","details":{}},"meta":{"generatedAt":"","requestId":"","version":""}}` + "\n"; string(b) != want {
		t.Fatalf("nil details: %s", b)
	}
	if _, ok := envelope.Encode("c", "m", map[string]any{"f": func() {}}, envelope.Meta{}); ok {
		t.Fatal("an unencodable detail was encoded")
	}
}

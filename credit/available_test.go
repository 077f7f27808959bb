package credit_test

import (
	"testing"

	"github.com/keyward/keyward/credit"
)

func TestAvailable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ allocation, granted, spent, reserved, want int64 }{
		{1000, 0, 0, 0, 1000},
		{1000, 500, 200, 100, 1200},
		{0, 0, 30, 0, -30}, // overage: below zero
		{100, 0, 0, 100, 0},
	} {
		if got := credit.Available(c.allocation, c.granted, c.spent, c.reserved); got != c.want {
			t.Errorf("Available(%d, %d, %d, %d) = %d, want %d", c.allocation, c.granted, c.spent, c.reserved, got, c.want)
		}
	}
}

package credit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
)

func TestCheckPeriod(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	start, end := credit.MonthlyUTC("org", now)
	for name, c := range map[string]struct {
		start, end time.Time
		ok         bool
	}{
		"month":         {start, end, true},
		"starts at now": {now, end, true},
		"ends at now":   {start, now, false},
		"ahead":         {now.Add(time.Hour), now.Add(2 * time.Hour), false},
		"ends in 9999":  {start, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), false},
		"starts 1600":   {time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), end, false},
	} {
		err := credit.CheckPeriod(now, c.start, c.end)
		if c.ok != (err == nil) || err != nil && !errors.Is(err, credit.ErrBadPeriod) {
			t.Errorf("%s: CheckPeriod = %v, want ok %v", name, err, c.ok)
		}
	}
}

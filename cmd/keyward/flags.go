package main

// The flags that more than one command reads, and how each is checked.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/spf13/cobra"
)

// limitFlags are the --rps, --burst and --concurrency flags of orgs create
// and update and plans set: a per-second rate, the bucket's capacity and
// an in-flight cap (0: the plan's, or derived).
type limitFlags struct{ perSecond, burst, concurrency int64 }

func (l *limitFlags) add(cmd *cobra.Command, of string) {
	cmd.Flags().Int64Var(&l.perSecond, "rps", 0, "requests per second, the token bucket's sustained rate ("+of+"; 0: derived from the per-minute rate)")
	cmd.Flags().Int64Var(&l.burst, "burst", 0, "requests that may start at once, the token bucket's capacity ("+of+"; 0: the larger of the per-second rate and the in-flight cap)")
	cmd.Flags().Int64Var(&l.concurrency, "concurrency", 0, "requests in flight at once ("+of+"; 0: the per-second rate, at least 2)")
}

func (l limitFlags) check() error {
	if err := keyward.CheckLimits(keyward.Limits{RequestsPerSecond: l.perSecond, Burst: l.burst, Concurrency: l.concurrency}); err != nil {
		return flagError("--rps/--burst/--concurrency", err)
	}
	return nil
}

// flagError is a usage error: flag's value broke keyward's rule err.
func flagError(flag string, err error) error {
	return usageError{fmt.Errorf("%s: %s", flag, strings.TrimPrefix(err.Error(), "keyward: "))}
}

// splitPermissions reads a --permissions list: comma-separated, blanks
// ignored.
func splitPermissions(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseRate reads "600/min", "600" or "600/m".
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, unit, _ := strings.Cut(s, "/")
	switch unit {
	case "", "m", "min", "minute":
	default:
		return 0, usageError{fmt.Errorf("--rate %q: want N/min", s)}
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v <= 0 {
		return 0, usageError{fmt.Errorf("--rate %q: want a positive number of requests per minute", s)}
	}
	if err := manage.CheckRatePerMinute(v); err != nil {
		return 0, flagError("--rate", err)
	}
	return v, nil
}

// checkCreditsFlag refuses, as a usage error, a flag's number of credits
// outside 0 to credit.MaxCredits, the most a ledger takes.
func checkCreditsFlag(flag string, n int64) error {
	if n < 0 || n > credit.MaxCredits {
		return usageError{fmt.Errorf("%s must be from 0 to %d (credit.MaxCredits), not %d", flag, credit.MaxCredits, n)}
	}
	return nil
}

// durationValue is a duration flag that also takes whole days: "30d", as
// well as anything time.ParseDuration reads ("720h", "90m").
type durationValue struct{ d *time.Duration }

// durationFlag defines a durationValue flag of cmd.
func durationFlag(cmd *cobra.Command, d *time.Duration, name string, def time.Duration, usage string) {
	*d = def
	cmd.Flags().Var(durationValue{d}, name, usage)
}

// Set parses s (the flag.Value interface).
func (v durationValue) Set(s string) error {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number of days (30d) or a duration (720h)")
		}
		// Out-of-range counts saturate rather than wrap, so that the
		// bound checks see them as too long.
		if n > int64(math.MaxInt64/(24*time.Hour)) || n < -int64(math.MaxInt64/(24*time.Hour)) {
			*v.d = time.Duration(math.MaxInt64)
			if n < 0 {
				*v.d = time.Duration(math.MinInt64)
			}
			return nil
		}
		*v.d = time.Duration(n) * 24 * time.Hour
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a whole number of days (30d) or a duration (720h)")
	}
	*v.d = d
	return nil
}

// String returns the duration (the flag.Value interface).
func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

// Type names the flag's type in the help.
func (durationValue) Type() string { return "duration" }

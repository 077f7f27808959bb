package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// triqaiClient behaves as the client Triqai publishes for its API, tuned
// for the free plan (1 request a second, 2 in flight):
//
//   - two workers send requests, so two are in flight at most;
//   - before each request a worker waits, when the last response said
//     X-RateLimit-Remaining: 0, its Retry-After plus 0.1 s, or when it had
//     none until its X-RateLimit-Reset plus 0.5 s (if that is ahead); then
//     until 1 / X-RateLimit-Limit seconds after the last response arrived.
//     Two workers that wait on the same response are released together
//     and send at the same instant;
//   - a 429 is retried, at most 3 attempts in all, waiting 2 s, then 2 s
//     (tenacity's wait_exponential(multiplier=1, min=2, max=60): 2^(n-1)
//     seconds after attempt n, at least 2); after the third the client
//     gives up with an exception, which aborts the whole batch.
type triqaiClient struct {
	base, key string

	mu     sync.Mutex
	last   lastResponse
	ok, rl int // 200 and 429 answers
}

// lastResponse is what the client keeps of the last response, whichever
// worker received it.
type lastResponse struct {
	at         time.Time // when it arrived; zero: none yet
	limit      float64
	remaining  int64 // -1: not said
	reset      time.Time
	retryAfter time.Duration // 0: not said
}

var errGaveUp = errors.New("max retries exceeded")

// waitForRateLimit is the client's wait before each request.
func (c *triqaiClient) waitForRateLimit(ctx context.Context) {
	c.mu.Lock()
	l := c.last
	c.mu.Unlock()
	if !l.at.IsZero() && l.remaining == 0 {
		if l.retryAfter > 0 {
			sleep(ctx, l.retryAfter+100*time.Millisecond)
		} else if wait := time.Until(l.reset); !l.reset.IsZero() && wait > 0 {
			sleep(ctx, wait+500*time.Millisecond)
		}
	}
	c.mu.Lock()
	l = c.last
	c.mu.Unlock()
	if !l.at.IsZero() && l.limit > 0 {
		sleep(ctx, time.Until(l.at.Add(time.Duration(float64(time.Second)/l.limit))))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// enrich sends one transaction, with the client's retries.
func (c *triqaiClient) enrich(ctx context.Context, body string) error {
	for attempt := 1; ; attempt++ {
		c.waitForRateLimit(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		status, err := c.post(ctx, body)
		if err != nil {
			return err
		}
		if status != http.StatusTooManyRequests {
			if status != http.StatusOK {
				return fmt.Errorf("status %d", status)
			}
			return nil
		}
		if attempt == 3 {
			return errGaveUp
		}
		sleep(ctx, min(max(2*time.Second, time.Duration(1<<(attempt-1))*time.Second), time.Minute))
	}
}

// post sends the request and keeps what its response says.
func (c *triqaiClient) post(ctx context.Context, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/transactions/enrich", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	l := lastResponse{at: time.Now(), remaining: -1}
	l.limit, _ = strconv.ParseFloat(resp.Header.Get("X-RateLimit-Limit"), 64)
	if r, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Remaining"), 10, 64); err == nil {
		l.remaining = r
	}
	l.reset, _ = time.Parse(time.RFC3339, resp.Header.Get("X-RateLimit-Reset"))
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		l.retryAfter = time.Duration(s) * time.Second
	}
	c.mu.Lock()
	c.last = l
	if resp.StatusCode == http.StatusOK {
		c.ok++
	} else if resp.StatusCode == http.StatusTooManyRequests {
		c.rl++
	}
	c.mu.Unlock()
	return resp.StatusCode, nil
}

// batch enriches n transactions with two workers; the first error aborts
// it, as the client's exception does.
func (c *triqaiClient) batch(n int) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	todo := make(chan int, n)
	for i := range n {
		todo <- i
	}
	close(todo)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range todo {
				if ctx.Err() != nil {
					return
				}
				if err := c.enrich(ctx, enrichBody); err != nil {
					cancel(fmt.Errorf("transaction %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// TestTriqaiClientOnTheFreePlan: Triqai's own client, as it behaves,
// enriches a batch of 39 transactions through `keyward serve` on the free
// plan. It sends its two first requests at the same instant, which a
// bucket of one second's rate (1) refused; the burst of 2 (the in-flight
// cap) lets both start, and the client then paces itself near 1 a second.
//
// Not parallel: the client paces itself on when responses arrive, and the
// package's other tests (processes of their own) would shift its timing.
func TestTriqaiClientOnTheFreePlan(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "triqai", "--plan", "free")
	k := c.key(org, "--name", "production", "--permissions", "transactions:enrich")
	srv := c.serve()

	const n = 39
	client := &triqaiClient{base: srv.base, key: k.Key}
	began := time.Now()
	err := client.batch(n)
	took := time.Since(began)
	t.Logf("%d transactions in %v: %d × 200, %d × 429", n, took.Round(time.Millisecond), client.ok, client.rl)
	require.NoError(t, err, "the batch was aborted after %d × 200, %d × 429", client.ok, client.rl)
	assert.Equal(t, n, client.ok, "every transaction enriched")
	assert.LessOrEqual(t, client.rl, 3, "at most 3 answers are 429")
	// Paced near the sustained rate: the burst does not raise it (the
	// last 37 calls take at least 37 s at 1 a second), and the client's
	// waits keep it within twice that.
	assert.GreaterOrEqual(t, took, time.Duration(n-2)*time.Second, "the sustained rate is 1 a second")
	assert.Less(t, took, 2*time.Duration(n)*time.Second, "paced near 1 a second")
}

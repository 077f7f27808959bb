package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/nilness"
)

// notifyChannel is the PostgreSQL channel key changes are announced on.
const notifyChannel = "keyward_keys"

// feedHeartbeat is how often the PostgreSQL feed sends itself a
// notification, on a channel of its own, behind any other: its round trip
// is the feed's lag (keyward.feed.lag) on this process's clock, and it
// checks a quiet connection.
const feedHeartbeat = 10 * time.Second

// changeRetention is how long rows of keyward_key_changes are kept: far
// longer than any poll interval.
const changeRetention = 10 * time.Minute

// recordChanges announces changed key hashes, inside the transaction that
// changes them: a row in keyward_key_changes for pollers, and on
// PostgreSQL a NOTIFY, delivered when the transaction commits.
func (s *Store) recordChanges(ctx context.Context, tx *sql.Tx, hashes ...string) error {
	now := time.Now().UnixNano()
	for _, h := range hashes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO keyward_key_changes (hash, changed_at) VALUES ($1, $2)`, h, now); err != nil {
			return err
		}
		if s.dialect == postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// Watch makes the store tell inv of every key change: at once (before the
// changing call returns) for changes made through this Store, and through
// the change feed for changes made by other instances. The first call
// starts the feed. Pass the *keyward.Cache in front of this store; a nil
// inv is ignored.
func (s *Store) Watch(inv keyward.Invalidator) {
	if nilness.Is(inv) {
		return
	}
	s.mu.Lock()
	s.watchers = append(s.watchers, inv)
	s.mu.Unlock()
	s.feedStart.Do(func() {
		s.wg.Add(1)
		if s.dialect == postgres {
			go s.listen()
		} else {
			go s.pollChanges()
		}
	})
}

func (s *Store) invalidators() []keyward.Invalidator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]keyward.Invalidator(nil), s.watchers...)
}

// notifyLocal tells this instance's watchers of hex hashes.
func (s *Store) notifyLocal(hashes ...string) {
	ws := s.invalidators()
	for _, h := range hashes {
		if kh, ok := parseHash(h); ok {
			for _, w := range ws {
				w.Invalidate(kh)
			}
		}
	}
}

func (s *Store) invalidateAll() {
	hooks.Invalidated(context.Background(), 1, true)
	for _, w := range s.invalidators() {
		w.InvalidateAll()
	}
}

func parseHash(h string) (keyward.KeyHash, bool) {
	var kh keyward.KeyHash
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(kh) {
		return kh, false
	}
	copy(kh[:], b)
	return kh, true
}

// sleep waits d or until the store closes; it reports whether to go on.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// listen is the PostgreSQL change feed: LISTEN on its own connection.
// Whenever the connection is (re)established every cache is dropped,
// since changes made while it was down were not heard.
func (s *Store) listen() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	backoff := 100 * time.Millisecond
	for {
		err := s.listenOnce(ctx)
		select {
		case <-s.stop:
			return
		default:
		}
		hooks.FeedLost(ctx, "listen")
		s.logger.Warn("keyward: sqlstore: change feed lost; reconnecting", "error", err)
		if !s.sleep(backoff) {
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	_, call := hooks.StartFeedConnect(ctx, "listen")
	heartbeats := "keyward_feed_" + strings.ToLower(rand.Text())
	conn, err := s.engine.Listen(ctx, notifyChannel, heartbeats)
	if err != nil {
		call.End("error", err)
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	call.End("ok", nil)
	hooks.FeedConnected(ctx, "listen")
	s.invalidateAll()
	lastPrune, lastBeat := time.Now(), time.Time{}
	for {
		if time.Since(lastBeat) >= feedHeartbeat {
			if err := s.heartbeat(ctx, conn, heartbeats); err != nil {
				return err
			}
			lastBeat = time.Now()
		}
		wctx, cancel := context.WithTimeout(ctx, feedHeartbeat-time.Since(lastBeat))
		channel, payload, err := conn.Wait(wctx)
		quiet := errors.Is(wctx.Err(), context.DeadlineExceeded)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !quiet:
			return err
		case err != nil: // a quiet while: the heartbeat checks the connection
		case channel == heartbeats:
			if sent, err := strconv.ParseInt(payload, 10, 64); err == nil {
				hooks.FeedLag(ctx, "listen", time.Since(time.Unix(0, sent)))
			}
		case payload == planFeedMarker:
			s.planChanged(ctx)
		default:
			if kh, ok := parseHash(payload); ok {
				hooks.Invalidated(ctx, 1, false)
				for _, w := range s.invalidators() {
					w.Invalidate(kh)
				}
			}
		}
		s.prune(ctx, &lastPrune)
	}
}

// heartbeat sends the feed a notification on its channel heartbeats,
// bounded so that a black-holed server is noticed (and the feed
// reconnects, dropping the caches) instead of waiting on TCP for many
// minutes.
func (s *Store) heartbeat(ctx context.Context, conn Listener, heartbeats string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return conn.Notify(ctx, heartbeats, strconv.FormatInt(time.Now().UnixNano(), 10))
}

// pollChanges is the SQLite change feed: read keyward_key_changes every
// PollInterval.
func (s *Store) pollChanges() {
	defer s.wg.Done()
	ctx := context.Background()
	var last int64
	for {
		err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM keyward_key_changes`).Scan(&last)
		if err == nil {
			break
		}
		s.logger.Warn("keyward: sqlstore: change feed cannot start; retrying", "error", err)
		if !s.sleep(s.poll) {
			return
		}
	}
	hooks.FeedConnected(ctx, "poll")
	s.invalidateAll()
	lastPrune := time.Now()
	failing := false
	for s.sleep(s.poll) {
		next, err := s.pollOnce(ctx, last)
		if err != nil {
			if !failing {
				hooks.FeedLost(ctx, "poll")
				s.logger.Warn("keyward: sqlstore: change feed poll failed", "error", err)
			}
			failing = true
			continue
		}
		if failing {
			// Changes may have been missed while polls failed.
			hooks.FeedConnected(ctx, "poll")
			s.invalidateAll()
			failing = false
		}
		last = next
		s.prune(ctx, &lastPrune)
	}
}

func (s *Store) pollOnce(ctx context.Context, after int64) (int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hash, changed_at FROM keyward_key_changes WHERE id > $1 ORDER BY id LIMIT 1000`, after)
	if err != nil {
		return after, err
	}
	defer rows.Close()
	ws := s.invalidators()
	plans := false
	for rows.Next() {
		var h string
		var at int64 // the writer's clock: on SQLite, a process of this machine
		if err := rows.Scan(&after, &h, &at); err != nil {
			return after, err
		}
		hooks.FeedLag(ctx, "poll", time.Since(time.Unix(0, at)))
		if h == planFeedMarker {
			plans = true
		} else if kh, ok := parseHash(h); ok {
			hooks.Invalidated(ctx, 1, false)
			for _, w := range ws {
				w.Invalidate(kh)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return after, err
	}
	if plans {
		_ = rows.Close() // before reading the plans: SQLite has one connection
		s.planChanged(ctx)
	}
	return after, nil
}

// planChanged reads the plan table again, as the feed reported a change
// to it, and drops the watchers' caches (keys cached with the old limits).
// A failed read is logged; PlanInterval's reload tries again.
func (s *Store) planChanged(ctx context.Context) {
	if s.plans.fixed {
		return
	}
	if err := s.reloadPlans(ctx); err != nil {
		s.logger.Warn("keyward: sqlstore: plan table reload failed; keeping the last one read", "error", err)
	}
	s.invalidateAll()
}

// prune deletes old change rows, at most once a minute.
func (s *Store) prune(ctx context.Context, last *time.Time) {
	if time.Since(*last) < time.Minute {
		return
	}
	*last = time.Now()
	cutoff := time.Now().Add(-changeRetention).UnixNano()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM keyward_key_changes WHERE changed_at < $1`, cutoff); err != nil {
		s.logger.Warn("keyward: sqlstore: pruning key changes failed", "error", err)
	}
}

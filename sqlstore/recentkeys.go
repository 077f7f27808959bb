package sqlstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/keyward/keyward"
)

var _ keyward.RecentKeyLister = (*Store)(nil)

// RecentKeys implements keyward.RecentKeyLister: the keys that work now
// whose last use, as written by FlushUsage, is at or after since, at most
// limit of them, the most recent first. A key is used as far as this
// store knows only if the store is the Authenticator's Usage, and a use
// counts once flushed: a key first used in the flush interval before an
// instance stopped is not listed.
func (s *Store) RecentKeys(ctx context.Context, since time.Time, limit int) (map[keyward.KeyHash]time.Time, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT hash, last_used_at FROM keyward_keys
		WHERE last_used_at >= $1 AND last_used_at > 0 AND `+workingKey+` ORDER BY last_used_at DESC LIMIT $3`,
		nanos(since), nanos(s.now()), max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: recent keys: %w", err)
	}
	defer rows.Close()
	out := make(map[keyward.KeyHash]time.Time)
	for rows.Next() {
		var (
			hash string
			used int64
			h    keyward.KeyHash
		)
		if err := rows.Scan(&hash, &used); err != nil {
			return nil, fmt.Errorf("keyward: sqlstore: recent keys: %w", err)
		}
		if b, err := hex.DecodeString(hash); err == nil && len(b) == len(h) {
			copy(h[:], b) // a corrupt hash is no key anyone can present: skipped
			out[h] = fromNanos(used)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: recent keys: %w", err)
	}
	return out, nil
}

package memstore

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward"
)

// Extend is a placeholder until the ledger branch lands.
func (x *Ledger) Extend(ctx context.Context, acct keyward.Account, id int64) (time.Time, error) {
	return time.Time{}, errors.New("not yet")
}

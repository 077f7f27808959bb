package hooks

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The observable instruments a request touches, by index.
const (
	cellRequests = iota
	cellLookups
	cellReserved
	cellCommitted
	cellReleased
	cellOpen
	numCells
)

// cell is the running total of one series of one observable instrument:
// a measurement is one atomic add, and the SDK reads every cell when a
// reader collects, so a request pays no attribute lookup in the SDK.
type cell struct {
	inst int
	set  attribute.Set
	n    atomic.Int64
}

// count adds v to the series o of instrument inst.
func (in *instruments) count(inst int, o *opts, v int64) {
	c := o.cells[inst].Load()
	if c == nil {
		c = in.newCell(inst, o)
	}
	c.n.Add(v)
}

func (in *instruments) newCell(inst int, o *opts) *cell {
	in.cellsMu.Lock()
	defer in.cellsMu.Unlock()
	if c := o.cells[inst].Load(); c != nil {
		return c
	}
	c := &cell{inst: inst, set: o.set}
	in.cells = append(in.cells, c)
	o.cells[inst].Store(c)
	return c
}

// observe reports every cell: the callback of the observable instruments.
func (in *instruments) observe(_ context.Context, o metric.Observer) error {
	in.cellsMu.Lock()
	cells := in.cells[:len(in.cells):len(in.cells)]
	in.cellsMu.Unlock()
	for _, c := range cells {
		o.ObserveInt64(in.observable[c.inst], c.n.Load(), metric.WithAttributeSet(c.set))
	}
	return nil
}

//go:build keyward_notelemetry

package hooks

const compiled = false

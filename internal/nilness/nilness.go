// Package nilness tells whether a value given as an interface is nil,
// including a typed nil pointer (a nil *keyward.Cache passed as a
// keyward.Invalidator), so that APIs can ignore it instead of panicking
// later, on another goroutine.
package nilness

import "reflect"

// Is reports whether v is nil, or a nil pointer, map, slice, channel,
// function or interface inside a non-nil interface.
func Is(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return r.IsNil()
	}
	return false
}

package admin

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is how the page says things to people: counts with their
// nouns, durations in days and hours, and failures as a heading and what
// to do next.

// count returns n and its noun, singular or plural: "1 request", "60
// requests".
func count(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// limitText says a limit as a customer reads it: "1 request per second".
func limitText(f limitField) string {
	if f.Value == 0 {
		return "no limit"
	}
	return count(f.Value, f.One, f.Many) + f.Per
}

// humanDuration says d in the largest whole unit: "1 day", "7 days", "1
// hour", "90 minutes", "30 seconds"; "no time" for 0 or less.
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "no time"
	case d%(24*time.Hour) == 0:
		return count(int64(d/(24*time.Hour)), "day", "days")
	case d%time.Hour == 0:
		return count(int64(d/time.Hour), "hour", "hours")
	case d%time.Minute == 0:
		return count(int64(d/time.Minute), "minute", "minutes")
	}
	return count(int64((d+time.Second-1)/time.Second), "second", "seconds")
}

// failureWords are a failed page's heading and what to do next, by
// status.
func failureWords(status int) (heading, next string) {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "That request could not be read", "Go back, check what you entered and try again."
	case http.StatusUnauthorized:
		return "Please sign in", "Sign in again, then come back to this page."
	case http.StatusForbidden:
		return "You can't do that here", "Reload the page and try again; if it still fails, this is not yours to change."
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "We couldn't find that", "It may have been removed, or the link is wrong. Start again from the dashboard."
	case http.StatusConflict:
		return "That can't be done now", "The key or organization changed meanwhile. Go back to see how it is now."
	case http.StatusUnprocessableEntity:
		return "Please check what you entered", "Go back, correct the fields named above, and send the form again."
	case http.StatusServiceUnavailable:
		return "The service is busy", "Nothing was lost. Try again in a moment."
	}
	return "Something went wrong", "Try again; if it keeps happening, contact support."
}

// flashes are the messages that confirm an action, by the code a redirect
// leaves in the flash cookie: fixed words only, so a forged cookie shows
// nothing new.
var flashes = map[string]string{
	"key-revoked": "Key revoked: calls with it are refused from now on.",
	"key-updated": "Key saved.",
	"key-created": "Key created.",
	"key-rotated": "Key rotated.",
	"granted":     "Credits granted.",
	"org-created": "Organization created.",
	"org-updated": "Organization saved.",
}

// fieldOf returns the form field a problem from manage's rules or the
// page's forms is about ("name", "plan", …), or "" for the form as a
// whole. The limits come first: a custom plan's missing rate is the
// requests per minute's problem.
func fieldOf(problem string) string {
	for _, f := range []struct{ word, field string }{
		{"RatePerMinute", "ratePerMinute"}, {"requests per minute", "ratePerMinute"}, {"requests per second", "ratePerSecond"},
		{"burst", "burst"}, {"requests at once", "concurrency"}, {"credits per month", "monthlyCredits"}, {"name", "name"}, {"environment", "environment"}, {"permission", "permissions"}, {"lifetime", "expiresInDays"},
		{"expir", "expiresInDays"}, {"plan", "plan"}, {"amount", "amount"}, {"note", "note"}, {"grace", "grace"},
	} {
		if strings.Contains(problem, f.word) {
			return f.field
		}
	}
	return ""
}

// pageProblem says a problem from manage's rules for the page's form,
// where a Go field name means nothing.
func pageProblem(p string) string {
	if strings.Contains(p, "set the organization's RatePerMinute") {
		return "this plan has no rates of its own: enter the requests per minute"
	}
	return p
}

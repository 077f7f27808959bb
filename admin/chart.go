package admin

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
)

// This file draws usage: two charts (requests by outcome, credits spent)
// as SVG made on the server from numbers and dates only, in the ranges
// the page offers.

// Chart geometry, in SVG user units: small, so that on a phone the
// labels stay near their size; the page lays the two charts side by side
// on wide screens.
const (
	chartW, chartH    = 360, 200
	chartLeft         = 44 // room for the y axis' numbers and title
	chartRight        = 8
	chartTop          = 14
	chartBottom       = 40 // room for the x axis' labels and title
	chartMaxXLabels   = 6
	chartBarFill      = 0.7
	chartLabelFontGap = 4
)

// chartOutcomes are the outcomes the requests chart stacks, bottom up;
// the CSS colours them by class o-<name>.
var chartOutcomes = []usage.Outcome{usage.Served, usage.Forbidden, usage.NoCredits, usage.RateLimited, usage.Failed}

// usageRange is one of the ranges the page shows usage in.
type usageRange struct {
	Value, Label string
	hours        bool // by hour; else by day
	n            int  // how many hours or days
}

var usageRanges = []usageRange{
	{Value: "24h", Label: "24 hours", hours: true, n: 24},
	{Value: "7d", Label: "7 days", n: 7},
	{Value: "30d", Label: "30 days", n: 30},
	{Value: "90d", Label: "90 days", n: 90},
}

// bucket is an hour's or a day's usage.
type bucket struct {
	start    time.Time
	requests [usage.NumOutcomes]int64
	credits  int64
}

func (b bucket) total() int64 {
	var n int64
	for _, v := range b.requests {
		n += v
	}
	return n
}

// usageView is what the page shows of usage: the ranges, the one shown,
// and its charts (or that there were no calls).
type usageView struct {
	Ranges   []option
	Label    string // "the last 30 days, by day (UTC)"
	Requests template.HTML
	Credits  template.HTML
	Empty    bool
	Total    int64
	Spent    int64
}

// usageView reads the usage of an organization (or of one of its keys)
// in the range r asks for (range=24h, 7d, 30d or 90d; else 30d): nil when
// the service keeps none.
func (h *Handler) usageView(r *http.Request, orgID, keyID string) (*usageView, error) {
	if h.cfg.Usage == nil {
		return nil, nil
	}
	hourly, hasHours := h.cfg.Usage.(usage.HourReader)
	want := r.URL.Query().Get("range")
	rg := usageRanges[2]
	v := &usageView{}
	for _, u := range usageRanges {
		if u.hours && !hasHours {
			continue
		}
		if u.Value == want {
			rg = u
		}
		v.Ranges = append(v.Ranges, option{Value: u.Value, Label: u.Label})
	}
	for i := range v.Ranges {
		v.Ranges[i].Selected = v.Ranges[i].Value == rg.Value
	}
	now := h.cfg.Now()
	var buckets []bucket
	if rg.hours {
		hours, err := hourly.UsageByHour(r.Context(), orgID, keyID, now.Add(-time.Duration(rg.n-1)*time.Hour), now)
		if err != nil {
			return nil, keyward.ServiceUnavailable("usage store", err)
		}
		for _, x := range hours {
			buckets = append(buckets, bucket{start: x.Hour, requests: x.Requests, credits: x.Credits})
		}
		v.Label = "the last 24 hours, by hour (UTC)"
	} else {
		days, err := h.series(r, orgID, keyID, rg.n)
		if err != nil {
			return nil, keyward.ServiceUnavailable("usage store", err)
		}
		for _, x := range days {
			buckets = append(buckets, bucket{start: x.Day, requests: x.Requests, credits: x.Credits})
		}
		v.Label = fmt.Sprintf("the last %d days, by day (UTC)", rg.n)
	}
	for _, b := range buckets {
		v.Total += b.total()
		v.Spent += b.credits
	}
	v.Empty = v.Total == 0
	if !v.Empty {
		v.Requests = chartSVG(buckets, rg.hours, "requests", "Requests", func(b bucket) []int64 {
			out := make([]int64, len(chartOutcomes))
			for i, o := range chartOutcomes {
				out[i] = b.requests[o]
			}
			return out
		})
		v.Credits = chartSVG(buckets, rg.hours, "credits", "Credits spent", func(b bucket) []int64 { return []int64{b.credits} })
	}
	return v, nil
}

// niceScale returns the axis' top and step for a peak: a step of 1, 2 or
// 5 times a power of ten, about four steps up to the top.
func niceScale(peak int64) (top, step int64) {
	step = 1
	for step*4 < peak {
		switch {
		case step*2*4 >= peak:
			step *= 2
		case step*5*4 >= peak:
			step *= 5
		default:
			step *= 10
		}
	}
	top = (peak + step - 1) / step * step
	return max(top, step), step
}

// chartSVG draws buckets as bars, stacked by the values that values
// gives (for the requests chart, the outcomes of chartOutcomes; for the
// credits chart, one value), with a labelled y axis (title) and x axis
// (hours or days, UTC). Each bucket's group carries data-start and
// data-<series> attributes, and a title that says the same to people.
func chartSVG(buckets []bucket, hours bool, id, title string, values func(bucket) []int64) template.HTML {
	var peak int64
	for _, b := range buckets {
		var sum int64
		for _, v := range values(b) {
			sum += v
		}
		peak = max(peak, sum)
	}
	top, step := niceScale(peak)
	plotW, plotH := float64(chartW-chartLeft-chartRight), float64(chartH-chartTop-chartBottom)
	base := float64(chartH - chartBottom)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart chart-%s" role="img" aria-labelledby="chart-%s-title" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`,
		id, id, chartW, chartH)
	unit := "day"
	if hours {
		unit = "hour"
	}
	fmt.Fprintf(&b, `<title id="chart-%s-title">%s by %s (UTC)</title>`, id, title, unit)
	for v := int64(0); v <= top; v += step { // y axis: gridlines and numbers
		y := base - float64(v)/float64(top)*plotH
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, y, chartW-chartRight, y)
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%.1f" text-anchor="end">%s</text>`, chartLeft-chartLabelFontGap, y+3.5, shortNumber(v))
	}
	fmt.Fprintf(&b, `<text class="axis-title" transform="rotate(-90)" x="%.1f" y="11" text-anchor="middle">%s</text>`, -(chartTop + plotH/2), title)
	fmt.Fprintf(&b, `<text class="axis-title" x="%.1f" y="%d" text-anchor="middle">%s (UTC)</text>`, chartLeft+plotW/2, chartH-4,
		map[bool]string{true: "Hour", false: "Day"}[hours])
	n := max(len(buckets), 1)
	slot := plotW / float64(n)
	barW := max(slot*chartBarFill, 1)
	every := (n + chartMaxXLabels - 1) / chartMaxXLabels
	for i, bk := range buckets {
		x := float64(chartLeft) + float64(i)*slot + (slot-barW)/2
		start, label := bk.start.UTC().Format(time.DateOnly), bk.start.UTC().Format("Jan 2")
		if hours {
			start, label = bk.start.UTC().Format("2006-01-02T15:04Z"), bk.start.UTC().Format("15:04")
		}
		vals := values(bk)
		var attrs, words []string
		for j, v := range vals {
			name := id
			if len(vals) > 1 {
				name = chartOutcomes[j].String()
			}
			attrs = append(attrs, fmt.Sprintf(`data-%s="%d"`, strings.ReplaceAll(name, "_", "-"), v))
			if v > 0 {
				words = append(words, fmt.Sprintf("%d %s", v, strings.ReplaceAll(name, "_", " ")))
			}
		}
		if len(words) == 0 {
			words = []string{"none"}
		}
		fmt.Fprintf(&b, `<g class="bucket" data-start="%s" %s><title>%s: %s</title>`, start, strings.Join(attrs, " "), start, strings.Join(words, ", "))
		y := base
		for j, v := range vals {
			if v == 0 {
				continue
			}
			h := float64(v) / float64(top) * plotH
			y -= h
			class := "credits"
			if len(vals) > 1 {
				class = "o-" + chartOutcomes[j].String()
			}
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, class, x, y, barW, h)
		}
		b.WriteString(`</g>`)
		if i%every == 0 {
			fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+barW/2, chartH-chartBottom+13, label)
		}
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, base, chartW-chartRight, base)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers, dates and fixed words only
}

// shortNumber says n in at most four characters or so: 950, 1.5k, 12k,
// 3.2M.
func shortNumber(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000_000:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/1e6), ".0") + "M"
	case n >= 10_000:
		return fmt.Sprintf("%dk", n/1000)
	case n >= 1000:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/1e3), ".0") + "k"
	}
	return fmt.Sprint(n)
}

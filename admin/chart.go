package admin

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/keyward/keyward/usage"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 720, 220
	chartPad       = 30
)

// chartOutcomes are the outcomes the chart stacks, bottom up, with their
// labels; the CSS colours them by class o-<name>.
var chartOutcomes = []usage.Outcome{usage.Served, usage.Forbidden, usage.NoCredits, usage.RateLimited, usage.Failed}

// chartSVG draws days as stacked bars of requests by outcome, with the
// credits spent as a line: markup made here from numbers and dates only.
// Each bar group carries data-day and data-<outcome> attributes, and a
// title that says the same to people.
func chartSVG(days []usage.Day) template.HTML {
	var peak, peakCredits int64 = 1, 1
	for _, d := range days {
		peak = max(peak, d.Total())
		peakCredits = max(peakCredits, d.Credits)
	}
	n := max(len(days), 1)
	slot := float64(chartW-2*chartPad) / float64(n)
	barW := max(slot*0.7, 1)
	plotH := float64(chartH - 2*chartPad)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	b.WriteString(`<title id="chart-title">Requests by outcome and credits spent, by day</title>`)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartPad, chartH-chartPad, chartW-chartPad, chartH-chartPad)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">requests (top: %d)</text>`, chartPad, chartPad-12, peak)
	fmt.Fprintf(&b, `<text class="label credits-label" x="%d" y="%d" text-anchor="end">credits spent (top: %d)</text>`, chartW-chartPad, chartPad-12, peakCredits)
	var line []string
	for i, d := range days {
		x := float64(chartPad) + float64(i)*slot + (slot-barW)/2
		day := d.Day.Format(time.DateOnly)
		var attrs, words []string
		for _, o := range chartOutcomes {
			attrs = append(attrs, fmt.Sprintf(`data-%s="%d"`, strings.ReplaceAll(o.String(), "_", "-"), d.Requests[o]))
			if d.Requests[o] > 0 {
				words = append(words, fmt.Sprintf("%d %s", d.Requests[o], strings.ReplaceAll(o.String(), "_", " ")))
			}
		}
		if len(words) == 0 {
			words = []string{"no requests"}
		}
		fmt.Fprintf(&b, `<g class="day" data-day="%s" data-credits="%d" %s><title>%s: %s; %d credits</title>`,
			day, d.Credits, strings.Join(attrs, " "), day, strings.Join(words, ", "), d.Credits)
		y := float64(chartH - chartPad)
		for _, o := range chartOutcomes {
			if d.Requests[o] == 0 {
				continue
			}
			h := float64(d.Requests[o]) / float64(peak) * plotH
			y -= h
			fmt.Fprintf(&b, `<rect class="o-%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, o, x, y, barW, h)
		}
		b.WriteString(`</g>`)
		cy := float64(chartH-chartPad) - float64(d.Credits)/float64(peakCredits)*plotH
		line = append(line, fmt.Sprintf("%.1f,%.1f", x+barW/2, cy))
		last := len(days) - 1
		if len(days) <= 10 || i == last || (i%7 == 0 && last-i >= 4) { // dates a week apart, and the last

			fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+barW/2, chartH-chartPad+16, d.Day.Format("Jan 2"))
		}
	}
	if len(line) > 0 {
		fmt.Fprintf(&b, `<polyline class="credits" points="%s"/>`, strings.Join(line, " "))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers, dates and fixed words only
}

package admin

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/keyward/keyward"
)

// This file is what makes the page the host's: its brand, the prefix it
// is mounted under, the origins that may frame it, and the policy that
// follows from them.

// Brand is how the page looks to a host's customers.
type Brand struct {
	// Name is the product's name, in the header and every page's title.
	// Zero: "keyward".
	Name string
	// LogoURL is an image shown before the name: an https URL or a path
	// of the host's ("/static/logo.svg"). Zero: none.
	LogoURL string
	// Accent is the colour of the header, the buttons and the links, as
	// "#rgb" or "#rrggbb". White text on it must meet WCAG AA's contrast
	// (4.5:1), which New checks. Zero: keyward's blue.
	Accent string
	// StylesheetURL is a stylesheet loaded after the page's own (an https
	// URL or a path of the host's): its rules may set the page's custom
	// properties (--accent, --ink, --muted, --line, --bg) or anything
	// else. Zero: none.
	StylesheetURL string
}

// paths are where the handler serves, Config.Prefix included.
type paths struct {
	api, page string
}

// APIPath returns the path under which h serves the API: Config.Prefix +
// APIPath. Mount h there.
func (h *Handler) APIPath() string { return h.paths.api }

// PagePath returns the path under which h serves the page: Config.Prefix
// + PagePath. Mount h there.
func (h *Handler) PagePath() string { return h.paths.page }

// checkHost returns the problems of cfg's Brand, Prefix and
// FrameAncestors.
func checkHost(cfg Config) []error {
	var errs []error
	bad := func(field, problem string) {
		errs = append(errs, &keyward.ConfigError{Field: "admin.Config." + field, Problem: problem})
	}
	if p := cfg.Prefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || !pathSafe(p)) {
		bad("Prefix", "must be empty or a path such as /portal: a leading /, no trailing /, letters, digits, -, _, . and / only")
	}
	if err := manageText(cfg.Brand.Name); err != "" {
		bad("Brand.Name", err)
	}
	for field, u := range map[string]string{"Brand.LogoURL": cfg.Brand.LogoURL, "Brand.StylesheetURL": cfg.Brand.StylesheetURL} {
		if _, ok := sourceOf(u); u != "" && !ok {
			bad(field, "must be an https URL or a path starting with a single /")
		}
	}
	if a := cfg.Brand.Accent; a != "" {
		if lum, ok := luminance(a); !ok {
			bad("Brand.Accent", "must be a colour as #rgb or #rrggbb")
		} else if ratio := 1.05 / (lum + 0.05); ratio < 4.5 {
			bad("Brand.Accent", fmt.Sprintf("is too light for white text: contrast %.2f:1, WCAG AA needs 4.5:1", ratio))
		}
	}
	for i, o := range cfg.FrameAncestors {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.User != nil || strings.ContainsAny(o, " ;,'*") {
			bad("FrameAncestors["+strconv.Itoa(i)+"]", "must be an origin such as https://portal.example.com")
		}
	}
	return errs
}

func pathSafe(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_./", c) >= 0) {
			return false
		}
	}
	return !strings.Contains(p, "//") && !strings.Contains(p, "/.")
}

// manageText returns why a brand name cannot be shown, or "".
func manageText(s string) string {
	if len(s) > 100 || strings.ContainsAny(s, "\x00\r\n\t") {
		return "must be at most 100 bytes on one line"
	}
	return ""
}

// sourceOf returns what a CSP source list needs to allow u: "'self'" for
// a path of the host's, the origin of an https URL.
func sourceOf(u string) (string, bool) {
	if strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.ContainsAny(u, " ;,'\\") {
		return "'self'", true
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || strings.ContainsAny(u, " ;,'\\") {
		return "", false
	}
	return "https://" + p.Host, true
}

// luminance is the WCAG relative luminance of a colour "#rgb" or
// "#rrggbb".
func luminance(c string) (float64, bool) {
	if c == "" || c[0] != '#' {
		return 0, false
	}
	if len(c) == 4 {
		c = "#" + strings.Repeat(c[1:2], 2) + strings.Repeat(c[2:3], 2) + strings.Repeat(c[3:4], 2)
	}
	if len(c) != 7 || c[0] != '#' {
		return 0, false
	}
	v, err := strconv.ParseUint(c[1:], 16, 32)
	if err != nil {
		return 0, false
	}
	lin := func(b uint64) float64 {
		s := float64(b) / 255
		if s <= 0.03928 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(v>>16&0xff) + 0.7152*lin(v>>8&0xff) + 0.0722*lin(v&0xff), true
}

// contentSecurityPolicy is the page's policy: its own script, style and
// images only (and the brand's logo and stylesheet), no inline script or
// style, forms to itself only, framed only by the host's listed origins.
func contentSecurityPolicy(cfg Config) string {
	img, style := []string{"'self'"}, []string{"'self'"}
	if src, ok := sourceOf(cfg.Brand.LogoURL); ok && src != "'self'" {
		img = append(img, src)
	}
	if src, ok := sourceOf(cfg.Brand.StylesheetURL); ok && src != "'self'" {
		style = append(style, src)
	}
	frame := "'none'"
	if len(cfg.FrameAncestors) > 0 {
		frame = strings.Join(cfg.FrameAncestors, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src " + strings.Join(style, " ") + "; img-src " + strings.Join(img, " ") +
		"; connect-src 'self'; form-action 'self'; frame-ancestors " + frame + "; base-uri 'none'"
}

// brandCSS is the stylesheet of the brand's accent colour.
func brandCSS(b Brand) string {
	if b.Accent == "" {
		return "/* keyward's colours */\n"
	}
	return ":root { --accent: " + b.Accent + "; }\n"
}

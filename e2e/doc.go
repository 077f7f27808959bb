// Package e2e tests keyward's admin API and dashboard from the outside:
// the dashboard in headless Chromium against a real `keyward serve`, and
// the admin API's answers against its OpenAPI document. It is a module of
// its own so that the core's go.mod never requires the browser driver or
// the OpenAPI validator.
package e2e

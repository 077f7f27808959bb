package admin

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
)

// This file is the admin API's part of the failure catalogue: every
// reason, status and message the admin API and the dashboard can answer
// with. The codes are keyward's (failures.go); the envelope and its writer
// are keyward.ErrorWriter's.

// Reasons: the envelope's error.details.reason.
const (
	ReasonMissingAdminToken    = "missing_admin_token"    // 401
	ReasonInvalidAdminToken    = "invalid_admin_token"    // 401: unknown, malformed or removed
	ReasonNotSignedIn          = "not_signed_in"          // 401: self-service: the host found no organization
	ReasonOperatorOnly         = "operator_only"          // 403: a self-service caller on an operator's route
	ReasonCrossSite            = "cross_site_request"     // 403: a form without its CSRF token, or from another site
	ReasonOrgNotFound          = "organization_not_found" // 404: unknown, or not the caller's
	ReasonKeyNotFound          = "key_not_found"          // 404: unknown, or not the organization's
	ReasonRouteNotFound        = "route_not_found"        // 404
	ReasonNotKept              = "not_kept"               // 404: the store keeps no usage or ledger history
	ReasonMethodNotAllowed     = "method_not_allowed"     // 405
	ReasonUnsupportedMediaType = "unsupported_media_type" // 415
	ReasonBodyTooLarge         = "body_too_large"         // 413
	ReasonMalformedJSON        = "malformed_json"         // 400
	ReasonMalformedForm        = "malformed_form"         // 400: the page's forms
	ReasonInvalidParameter     = "invalid_parameter"      // 400: a query parameter
	ReasonInvalidFields        = "invalid_fields"         // 422: see details.problems
	ReasonKeyRevoked           = "key_revoked"            // 409
	ReasonKeyRotated           = "key_rotated"            // 409
	ReasonKeyExpired           = "key_expired"            // 409
	ReasonTooManyKeys          = "too_many_keys"          // 409: the organization's cap on working keys
)

// CodeNotFound is error.code of a 404: the admin API's only code that
// keyward's request path never sends.
const CodeNotFound = "not_found"

func failure(status int, code, reason, msg string) *keyward.Error {
	return &keyward.Error{Status: status, Code: code, Reason: reason, Message: msg}
}

var (
	errMissingToken = &keyward.Error{Status: http.StatusUnauthorized, Code: keyward.CodeAuthentication, Reason: ReasonMissingAdminToken,
		Message: "Admin token is missing. Send it as Authorization: Bearer <token> (create one with `keyward admin token create`).",
		Header:  http.Header{"Www-Authenticate": {`Bearer realm="keyward admin"`}}}
	errInvalidToken = &keyward.Error{Status: http.StatusUnauthorized, Code: keyward.CodeAuthentication, Reason: ReasonInvalidAdminToken,
		Message: "Admin token is invalid or has been removed.",
		Header:  http.Header{"Www-Authenticate": {`Bearer realm="keyward admin", error="invalid_token"`}}}
	errNotSignedIn = failure(http.StatusUnauthorized, keyward.CodeAuthentication, ReasonNotSignedIn,
		"Sign in to manage your organization's keys.")
	errOperatorOnly = failure(http.StatusForbidden, keyward.CodeAuthorization, ReasonOperatorOnly,
		"Only the service's operator may do this.")
	errCrossSite = failure(http.StatusForbidden, keyward.CodeAuthorization, ReasonCrossSite,
		"The form was not sent from this dashboard, or it expired. Reload the page and try again.")
	errOrgNotFound   = failure(http.StatusNotFound, CodeNotFound, ReasonOrgNotFound, "Organization not found.")
	errKeyNotFound   = failure(http.StatusNotFound, CodeNotFound, ReasonKeyNotFound, "Key not found.")
	errRouteNotFound = failure(http.StatusNotFound, CodeNotFound, ReasonRouteNotFound, "No such route.")
	errUsageNotKept  = failure(http.StatusNotFound, CodeNotFound, ReasonNotKept, "This service keeps no usage by day.")
	errLedgerNotKept = failure(http.StatusNotFound, CodeNotFound, ReasonNotKept, "This service keeps no credit ledger history.")
	errMediaType     = failure(http.StatusUnsupportedMediaType, keyward.CodeValidation, ReasonUnsupportedMediaType,
		"Send the request body as application/json.")
	errMalformed = failure(http.StatusBadRequest, keyward.CodeValidation, ReasonMalformedJSON,
		"The request body must be one JSON object with the documented fields only.")
	errKeyRevoked = failure(http.StatusConflict, keyward.CodeValidation, ReasonKeyRevoked, "The key is revoked.")
	errKeyRotated = failure(http.StatusConflict, keyward.CodeValidation, ReasonKeyRotated,
		"The key was rotated already: rotate its successor instead.")
	errKeyExpired = failure(http.StatusConflict, keyward.CodeValidation, ReasonKeyExpired,
		"The key has expired; create a new one.")
	errTooManyKeys = failure(http.StatusConflict, keyward.CodeValidation, ReasonTooManyKeys,
		"The organization has as many working keys as it may have. Revoke one it no longer needs, then try again.")
)

func methodNotAllowed(allow []string) *keyward.Error {
	e := failure(http.StatusMethodNotAllowed, keyward.CodeValidation, ReasonMethodNotAllowed,
		"Method not allowed here. Allowed: "+strings.Join(allow, ", ")+".")
	e.Header = http.Header{"Allow": {strings.Join(allow, ", ")}}
	return e
}

func bodyTooLarge(max int64) *keyward.Error {
	e := failure(http.StatusRequestEntityTooLarge, keyward.CodeValidation, ReasonBodyTooLarge,
		"The request body may be at most "+strconv.FormatInt(max, 10)+" bytes.")
	e.Details = map[string]any{"maxBytes": max}
	return e
}

func badParameter(name, want string) *keyward.Error {
	e := failure(http.StatusBadRequest, keyward.CodeValidation, ReasonInvalidParameter,
		"Query parameter "+name+" must be "+want+".")
	e.Details = map[string]any{"parameter": name}
	return e
}

// invalid is the 422 for a request whose fields keyward's rules refuse
// (manage.CheckOrg, KeySpec.Check, …): each problem, one per line of err.
func invalid(err error) *keyward.Error {
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimPrefix(line, "keyward: "); line != "" {
			problems = append(problems, line)
		}
	}
	e := failure(http.StatusUnprocessableEntity, keyward.CodeValidation, ReasonInvalidFields,
		"The request is invalid: see details.problems. Nothing was changed.")
	e.Details = map[string]any{"problems": problems}
	return e
}

// failureOf is the answer to an error of a KeyManager or a ledger: a
// failure it names, or a 503 (logged, never sent) for any other.
func failureOf(err error) error {
	var ke *keyward.Error
	switch {
	case errors.As(err, &ke):
		return ke
	case errors.Is(err, manage.ErrOrgNotFound):
		return errOrgNotFound
	case errors.Is(err, keyward.ErrKeyNotFound):
		return errKeyNotFound
	case errors.Is(err, manage.ErrKeyRevoked):
		return errKeyRevoked
	case errors.Is(err, manage.ErrKeyRotated):
		return errKeyRotated
	case errors.Is(err, manage.ErrKeyExpired):
		return errKeyExpired
	case errors.Is(err, manage.ErrTooManyKeys):
		return errTooManyKeys
	case errors.Is(err, credit.ErrInvalidAmount):
		return invalid(errors.New("amount is out of range: a grant is 1 or more credits, and a period's allocation and grants are at most credit.MaxCredits"))
	}
	return keyward.ServiceUnavailable("key store", err)
}

var errMalformedForm = failure(http.StatusBadRequest, keyward.CodeValidation, ReasonMalformedForm, "The form could not be read.")

// Package envelope encodes keyward's error envelope, Triqai's wire shape:
//
//	{"success":false,"error":{"code":…,"message":…,"details":{…}},
//	 "meta":{"generatedAt":…,"requestId":…,"version":…}}
//
// What goes in it is decided by keyward's failure catalogue.
package envelope

import "encoding/json"

// Meta is the envelope's meta member.
type Meta struct {
	GeneratedAt string `json:"generatedAt"`
	RequestID   string `json:"requestId"`
	Version     string `json:"version"`
}

type envelope struct {
	Success bool    `json:"success"`
	Error   failure `json:"error"`
	Meta    Meta    `json:"meta"`
}

type failure struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// Encode returns the envelope of a failure, followed by a newline. It
// fails only if a details value cannot be encoded as JSON.
func Encode(code, message string, details map[string]any, meta Meta) ([]byte, bool) {
	if details == nil {
		details = map[string]any{}
	}
	b, err := json.Marshal(envelope{Error: failure{Code: code, Message: message, Details: details}, Meta: meta})
	if err != nil {
		return nil, false
	}
	return append(b, '\n'), true
}

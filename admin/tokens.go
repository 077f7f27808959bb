package admin

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ascii"
)

// TokenPrefix starts every admin token: "kwadmin_" and then, as in an API
// key, 30 random base62 characters and a CRC32 checksum, so that a leaked
// token is found by scanners and a mistyped one is refused without a
// lookup.
const TokenPrefix = "kwadmin_"

var tokenFormat, _ = keyward.NewKeyFormat(TokenPrefix)

// TokenFile is the file of admin tokens: one line per token holding its
// SHA-256, its hint, its name and when it was made; never the token. A
// token is removed (revoked) by deleting its line; the file is read again
// when it changes, and the dashboard sessions the token opened end. It is
// safe for concurrent use.
type TokenFile struct {
	path string

	mu     sync.Mutex
	stamp  fileStamp
	tokens []storedToken
	err    error // the last read's, if it failed: no token is valid then
	logger *slog.Logger
	logged string // the failure logged last, so that it is logged once
}

type fileStamp struct {
	mod  time.Time
	size int64
}

type storedToken struct {
	hash keyward.KeyHash
	name string
}

// OpenTokenFile reads the admin tokens of the file at path, which must
// exist (CreateToken makes it) and be well formed.
func OpenTokenFile(path string) (*TokenFile, error) {
	f := &TokenFile{path: path}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.read(); err != nil { // returned, not logged
		return nil, err
	}
	return f, nil
}

// logTo makes f log to logger when the file cannot be used (a nil f is
// left alone).
func (f *TokenFile) logTo(logger *slog.Logger) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.logger = logger
	f.mu.Unlock()
}

// reload reads the file again if it changed since it was last read, and
// logs a failure to read it (once for each different failure), and that
// it is readable again: while it cannot be read, no token works.
// Called with f.mu held.
func (f *TokenFile) reload() error {
	err := f.read()
	logger := f.logger
	if logger == nil {
		logger = slog.Default()
	}
	switch {
	case err != nil && err.Error() != f.logged:
		logger.Error("keyward: admin: the admin token file cannot be used; no admin token works until it is fixed", "error", err)
		f.logged = err.Error()
	case err == nil && f.logged != "":
		logger.Info("keyward: admin: the admin token file is readable again", "path", f.path)
		f.logged = ""
	}
	return err
}

// read does reload's reading. Called with f.mu held.
func (f *TokenFile) read() error {
	st, err := os.Stat(f.path)
	if err != nil {
		f.tokens, f.err = nil, fmt.Errorf("keyward: admin token file: %w", err)
		return f.err
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	if stamp == f.stamp && f.err == nil {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		f.tokens, f.err = nil, fmt.Errorf("keyward: admin token file: %w", err)
		return f.err
	}
	tokens, err := parseTokens(string(b))
	if err != nil {
		f.tokens, f.err = nil, fmt.Errorf("keyward: admin token file %s: %w", f.path, err)
		return f.err
	}
	f.tokens, f.err, f.stamp = tokens, nil, stamp
	return nil
}

func parseTokens(s string) ([]storedToken, error) {
	var out []storedToken
	for i, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 4 {
			return nil, fmt.Errorf("line %d: want 4 tab-separated fields: sha256, hint, name, created", i+1)
		}
		b, err := hex.DecodeString(fields[0])
		if err != nil || len(b) != len(keyward.KeyHash{}) {
			return nil, fmt.Errorf("line %d: the first field is not a SHA-256 in hex", i+1)
		}
		var t storedToken
		copy(t.hash[:], b)
		t.name = fields[2]
		out = append(out, t)
	}
	return out, nil
}

// Verify returns the name of the admin token token, and whether it is one
// of the file's. It compares hashes in constant time, and refuses a string
// that is not shaped like a token without hashing it.
func (f *TokenFile) Verify(token string) (name string, ok bool) {
	if f == nil || !tokenFormat.Valid(token) {
		return "", false
	}
	return f.find(keyward.Hash(token))
}

// find returns the name of the token whose hash is h, and whether the file
// (read again if it changed) still holds it.
func (f *TokenFile) find(h keyward.KeyHash) (name string, ok bool) {
	f.mu.Lock()
	_ = f.reload() // a file that cannot be read has no valid token
	tokens := f.tokens
	f.mu.Unlock()
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 {
			name, ok = t.name, true
		}
	}
	return name, ok
}

// ErrBadTokenName is what CreateToken returns for a name that is not 1 to
// 64 letters, digits, spaces or ._-.
var ErrBadTokenName = errors.New("keyward: admin token name must be 1 to 64 letters, digits, spaces or ._-")

// CreateToken makes an admin token named name, appends its hash to the
// token file at path (created, readable by its owner only, if missing)
// and returns the token and its hint. The token is shown this once: only
// its hash is kept.
func CreateToken(path, name string, now time.Time) (token, hint string, err error) {
	if strings.TrimSpace(name) == "" || !ascii.Only(name, 64, " ._-") {
		return "", "", ErrBadTokenName
	}
	if st, err := os.Stat(path); err == nil {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", "", fmt.Errorf("keyward: admin token file: %w", err)
		}
		if _, err := parseTokens(string(b)); err != nil {
			return "", "", fmt.Errorf("keyward: admin token file %s: %w", path, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", "", fmt.Errorf("keyward: admin token file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("keyward: admin token file: %w", err)
	}
	token, err = tokenFormat.Generate()
	if err != nil {
		return "", "", err
	}
	hash := keyward.Hash(token)
	hint = tokenFormat.Hint(token)
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("keyward: admin token file: %w", err)
	}
	line := hash.String() + "\t" + hint + "\t" + name + "\t" + now.UTC().Format(time.RFC3339) + "\n"
	if _, err := file.WriteString(line); err != nil {
		file.Close()
		return "", "", fmt.Errorf("keyward: admin token file: %w", err)
	}
	if err := file.Close(); err != nil {
		return "", "", fmt.Errorf("keyward: admin token file: %w", err)
	}
	return token, hint, nil
}

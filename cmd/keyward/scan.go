package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keyward/keyward"
	"github.com/spf13/cobra"
)

func (a *app) scanCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "scan [PATH…]",
		Short: "Report keys with a valid checksum found in files (exit 1 if any): a pre-commit hook",
		Long: `Walks the paths (default: .), skipping .git and binary files, and reports every
string that is a well-formed key of the configured prefix with a valid
checksum, as path:line: hint. The whole key is never printed. Strings that
look like keys but fail the checksum are not reported.`,
		RunE: func(cmd *cobra.Command, paths []string) error {
			format, err := keyward.NewKeyFormat(a.prefix)
			if err != nil {
				return usageError{err}
			}
			if len(paths) == 0 {
				paths = []string{"."}
			}
			found := 0
			for _, root := range paths {
				err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if d.IsDir() {
						if d.Name() == ".git" && path != root {
							return filepath.SkipDir
						}
						return nil
					}
					if !d.Type().IsRegular() {
						return nil
					}
					n, err := scanFile(path, format, a.stdout)
					found += n
					return err
				})
				if err != nil {
					return err
				}
			}
			if found > 0 {
				fmt.Fprintf(a.stderr, "keyward: %d key(s) found; revoke them (keyward keys revoke) and remove them from the files\n", found)
				return exitError{1}
			}
			return nil
		},
	}
}

// scanFile reports the keys in one file. A file whose first 8 KiB hold a
// NUL byte is binary and skipped.
func scanFile(path string, format keyward.KeyFormat, out io.Writer) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, err := br.Peek(8 << 10)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return 0, err
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return 0, nil
	}
	prefix := []byte(format.Prefix())
	n, line := 0, 0
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		for i := 0; ; {
			j := bytes.Index(b[i:], prefix)
			if j < 0 {
				break
			}
			start := i + j
			i = start + 1
			if start > 0 && isBase62(b[start-1]) {
				continue // inside a longer token
			}
			end := start + format.Len()
			if end > len(b) || (end < len(b) && isBase62(b[end])) {
				continue
			}
			if k := string(b[start:end]); format.Parse(k) == keyward.KeyOK {
				fmt.Fprintf(out, "%s:%d: %s\n", path, line, format.Hint(k))
				n++
				i = end
			}
		}
	}
	return n, sc.Err()
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

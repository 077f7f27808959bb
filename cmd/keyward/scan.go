package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/keyward/keyward"
	"github.com/spf13/cobra"
)

func (a *app) scanCommand() *cobra.Command {
	var staged bool
	cmd := &cobra.Command{
		Use:   "scan [PATH…] | scan --staged",
		Short: "Report keys with a valid checksum found in files (exit 1 if any): a pre-commit hook",
		Long: `Walks the paths (default: .), skipping .git and binary files, and reports every
string that is a well-formed key of the configured prefix with a valid
checksum, as path:line: hint, even when letters or digits touch it. The whole
key is never printed. Strings that look like keys but fail the checksum are
not reported. UTF-8 and UTF-16 text is read. A symbolic link named as a PATH
is followed; links met inside a directory are not. A path that cannot be
read is named on stderr, the scan goes on with the rest, and the exit status
is 1.

With --staged, what git would commit is scanned instead: the content of each
file in the index that differs from HEAD (git diff --cached), not the file in
the working tree, so a key removed from the file but still staged is found.
Paths are reported as git names them, relative to the repository's top.`,
		RunE: func(cmd *cobra.Command, paths []string) error {
			format, err := a.keyFormat()
			if err != nil {
				return err
			}
			s := &scanner{format: format, stdout: a.stdout, stderr: a.stderr}
			switch {
			case staged && len(paths) > 0:
				return usageError{errors.New("--staged scans what git would commit and takes no PATH")}
			case staged:
				if err := s.scanStaged(cmd.Context()); err != nil {
					return err
				}
			default:
				if len(paths) == 0 {
					paths = []string{"."}
				}
				for _, path := range paths {
					s.scanPath(path)
				}
			}
			if s.found > 0 {
				fmt.Fprintf(a.stderr, "keyward: %d key(s) found; revoke them (keyward keys revoke) and remove them from the files\n", s.found)
			}
			if s.failed > 0 {
				fmt.Fprintf(a.stderr, "keyward: %d path(s) could not be scanned; the scan is incomplete\n", s.failed)
			}
			if s.found > 0 || s.failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&staged, "staged", false, "scan the content staged for the next commit (a pre-commit hook)")
	return cmd
}

// scanStaged scans the staged content of every file added, copied,
// modified, renamed or retyped in the index, as git diff --cached lists
// it: -z, so that no name is quoted or split, and the blob's id, so that
// the index's content is read and not the working tree's. Submodules
// (gitlinks) are skipped. An error running git is returned: the hook must
// not pass because git could not be asked.
func (s *scanner) scanStaged(ctx context.Context) error {
	var stderr bytes.Buffer
	list := exec.CommandContext(ctx, "git", "diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", "--diff-filter=d")
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		return fmt.Errorf("git diff --cached: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	// Records are ":oldmode newmode oldsha newsha status" NUL path NUL.
	fields := bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		meta, path := strings.Fields(string(fields[i])), string(fields[i+1])
		if len(meta) < 5 {
			return fmt.Errorf("git diff --cached: unexpected record %q", fields[i])
		}
		if mode, blob := meta[1], meta[3]; mode != "160000" {
			s.scanBlob(ctx, path, blob)
		}
	}
	return nil
}

// scanBlob reports the keys in a git blob, named path.
func (s *scanner) scanBlob(ctx context.Context, path, blob string) {
	var stderr bytes.Buffer
	show := exec.CommandContext(ctx, "git", "cat-file", "blob", blob)
	show.Stderr = &stderr
	out, err := show.StdoutPipe()
	if err != nil {
		s.fail(path, err)
		return
	}
	if err := show.Start(); err != nil {
		s.fail(path, err)
		return
	}
	s.scanReader(path, out)
	_, _ = io.Copy(io.Discard, out) // a binary file is not read to its end
	if err := show.Wait(); err != nil {
		s.fail(path, fmt.Errorf("git cat-file: %w: %s", err, bytes.TrimSpace(stderr.Bytes())))
	}
}

// scanner reports the keys in files and counts the keys found and the
// paths it could not read.
type scanner struct {
	format         keyward.KeyFormat
	stdout, stderr io.Writer
	found, failed  int
}

// scanPath scans a path named on the command line: a file, or every file
// under a directory. A symbolic link is followed.
func (s *scanner) scanPath(path string) {
	info, err := os.Stat(path)
	switch {
	case err != nil:
		s.fail(path, err)
	case info.IsDir():
		s.scanDir(path)
	case info.Mode().IsRegular():
		s.scanFile(path)
	default:
		s.fail(path, errors.New("not a regular file or a directory"))
	}
}

// scanDir scans the regular files under dir, skipping .git directories.
// Symbolic links inside dir are not followed, so the walk stays in the
// tree and cannot loop.
func (s *scanner) scanDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.fail(dir, err) // and scan the entries read before the error
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if e.Name() != ".git" {
				s.scanDir(path)
			}
		case e.Type().IsRegular():
			s.scanFile(path)
		}
	}
}

// scanFile reports the keys in one file (see scanReader).
func (s *scanner) scanFile(path string) {
	f, err := os.Open(path)
	if err != nil {
		s.fail(path, err)
		return
	}
	defer f.Close()
	s.scanReader(path, f)
}

// scanReader reports the keys in r, the content of path. UTF-16 text is
// decoded first; any other content whose first 8 KiB hold a NUL byte is
// binary and skipped.
func (s *scanner) scanReader(path string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(8 << 10)
	if err != nil && !errors.Is(err, io.EOF) {
		s.fail(path, err)
		return
	}
	var text io.Reader = br
	if order, bom := utf16Order(head); order != notUTF16 {
		_, _ = br.Discard(bom) // already buffered by Peek
		text = newUTF16Reader(br, order)
	} else if bytes.IndexByte(head, 0) >= 0 {
		return
	}
	err = scanText(text, s.format, func(line int, key string) {
		fmt.Fprintf(s.stdout, "%s:%d: %s\n", path, line, s.format.Hint(key))
		s.found++
	})
	if err != nil {
		s.fail(path, err)
	}
}

// fail reports on stderr that path could not be scanned, or not to the end.
func (s *scanner) fail(path string, err error) {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is printed already
	}
	fmt.Fprintf(s.stderr, "keyward: cannot scan %s: %v\n", path, err)
	s.failed++
}

// chunkSize is how much text scanText looks at in one go, whatever the
// length of its lines.
const chunkSize = 64 << 10

// scanText calls report with the line number and the text of every key of
// format in r. A key is found by its prefix, length and checksum, not by
// word boundaries, so letters or digits next to it do not hide it; without
// a valid checksum nothing is reported. r is read in chunks, and the last
// key length − 1 bytes of each are looked at again with the next, so a key
// across two chunks is found.
func scanText(r io.Reader, format keyward.KeyFormat, report func(line int, key string)) error {
	prefix := []byte(format.Prefix())
	// A live key or, longer, a test key (its prefix goes on with "test_").
	lens := [2]int{format.Len() + len(format.TestPrefix()) - len(format.Prefix()), format.Len()}
	keyLen := lens[0]
	buf := make([]byte, 0, chunkSize+keyLen)
	line := 1
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		// Keys starting before end are whole in buf; the bytes from end on
		// wait for the next read, unless there is none.
		end := len(buf)
		if err == nil {
			end = max(0, len(buf)-(keyLen-1))
		}
		counted := 0 // the newlines before counted are in line
		for i := 0; ; {
			j := bytes.Index(buf[i:], prefix)
			if j < 0 || i+j >= end {
				break
			}
			start := i + j
			i = start + 1
			for _, l := range lens {
				if start+l > len(buf) {
					continue
				}
				if key := string(buf[start : start+l]); format.Valid(key) {
					line += bytes.Count(buf[counted:start], []byte{'\n'})
					counted = start
					report(line, key)
					break
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		line += bytes.Count(buf[counted:end], []byte{'\n'})
		buf = buf[:copy(buf, buf[end:])]
	}
}

// byteOrder is the byte order of UTF-16 text.
type byteOrder int

const (
	notUTF16 byteOrder = iota
	littleEndian
	bigEndian
)

// utf16Order tells whether a file that starts with head is UTF-16 text and
// in which byte order, and how many bytes of byte-order mark to skip.
// Without a mark, text where the bytes at even offsets or those at odd
// offsets are mostly NUL and the others never are (mostly ASCII written in
// UTF-16) is taken as UTF-16.
func utf16Order(head []byte) (order byteOrder, bom int) {
	if bytes.HasPrefix(head, []byte{0xff, 0xfe}) {
		return littleEndian, 2
	}
	if bytes.HasPrefix(head, []byte{0xfe, 0xff}) {
		return bigEndian, 2
	}
	pairs := len(head) / 2
	var nul [2]int // NUL bytes at even and at odd offsets
	for i := range 2 * pairs {
		if head[i] == 0 {
			nul[i%2]++
		}
	}
	switch {
	case nul[0] == 0 && 2*nul[1] > pairs:
		return littleEndian, 0
	case nul[1] == 0 && 2*nul[0] > pairs:
		return bigEndian, 0
	}
	return notUTF16, 0
}

// utf16Block is how many bytes of UTF-16 a utf16Reader decodes at a time.
const utf16Block = 32 << 10

// utf16Reader decodes UTF-16 text into UTF-8. An unpaired surrogate
// becomes U+FFFD; an odd last byte is dropped.
type utf16Reader struct {
	r     io.Reader
	order byteOrder
	raw   []byte   // the bytes read
	units []uint16 // the units to decode; a high surrogate at the end of a block waits here for the next block
	text  []byte   // the decoded text, which out is the unread part of
	out   []byte
	err   error // returned once out is read
}

// newUTF16Reader returns a reader of the UTF-8 text of the UTF-16 in r.
func newUTF16Reader(r io.Reader, order byteOrder) *utf16Reader {
	return &utf16Reader{r: r, order: order, raw: make([]byte, utf16Block)}
}

// Read reads decoded text into p.
func (u *utf16Reader) Read(p []byte) (int, error) {
	for len(u.out) == 0 && u.err == nil {
		u.decode()
	}
	if len(u.out) == 0 {
		return 0, u.err
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

// decode reads the next block and decodes it into u.out.
func (u *utf16Reader) decode() {
	n, err := io.ReadFull(u.r, u.raw)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	for i := 0; i+1 < n; i += 2 {
		if u.order == bigEndian {
			u.units = append(u.units, uint16(u.raw[i])<<8|uint16(u.raw[i+1]))
		} else {
			u.units = append(u.units, uint16(u.raw[i+1])<<8|uint16(u.raw[i]))
		}
	}
	keep := 0
	if last := len(u.units) - 1; err == nil && last >= 0 && 0xd800 <= u.units[last] && u.units[last] < 0xdc00 {
		keep = 1
	}
	u.text = u.text[:0]
	for _, r := range utf16.Decode(u.units[:len(u.units)-keep]) {
		u.text = utf8.AppendRune(u.text, r)
	}
	u.out = u.text
	u.units = append(u.units[:0], u.units[len(u.units)-keep:]...)
	u.err = err
}

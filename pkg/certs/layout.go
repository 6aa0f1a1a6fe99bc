package certs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The files a directory holds pairs in.
const (
	certExt   = ".crt"          // NAME.crt, with NAME.key
	keyExt    = ".key"          //
	chainFile = "fullchain.pem" // NAME/fullchain.pem, with NAME/privkey.pem
	privFile  = "privkey.pem"   //
)

// source is where one named pair is read from.
type source struct {
	name      string
	cert, key string
	// err, if set, is why the pair is incomplete: a certificate file
	// without its key file, or the reverse.
	err error
}

// pairName is the NAME of the pair whose certificate is at certPath: the
// file's base without its extension, or the folder's name for certbot's
// fullchain.pem.
func pairName(certPath string) string {
	base := filepath.Base(certPath)
	if base == chainFile {
		return filepath.Base(filepath.Dir(certPath))
	}
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// scanDir lists the pairs in dir, by NAME. Entries whose name starts with
// "." are skipped (editors' temporary files, Kubernetes' ..data links), as
// are files that are neither .crt nor .key and folders with neither
// fullchain.pem nor privkey.pem.
func scanDir(dir string) ([]source, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such directory", dir)
	case errors.Is(err, syscall.ENOTDIR):
		return nil, fmt.Errorf("%s: not a directory", dir)
	case err != nil:
		return nil, err
	}
	var srcs []source
	certs, keys := map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			if src, ok := scanFolder(path); ok {
				srcs = append(srcs, src)
			}
			continue
		}
		// A dangling link named NAME.crt still counts: reading it says why
		// it fails.
		switch filepath.Ext(name) {
		case certExt:
			certs[strings.TrimSuffix(name, certExt)] = true
		case keyExt:
			keys[strings.TrimSuffix(name, keyExt)] = true
		}
	}
	for stem := range certs {
		src := source{name: stem, cert: filepath.Join(dir, stem+certExt), key: filepath.Join(dir, stem+keyExt)}
		if !keys[stem] {
			src.err = fmt.Errorf("%s: no matching key file %s", src.cert, src.key)
		}
		srcs = append(srcs, src)
	}
	for stem := range keys {
		if !certs[stem] {
			src := source{name: stem, cert: filepath.Join(dir, stem+certExt), key: filepath.Join(dir, stem+keyExt)}
			src.err = fmt.Errorf("%s: no matching certificate file %s", src.key, src.cert)
			srcs = append(srcs, src)
		}
	}
	sortSources(srcs)
	return srcs, nil
}

// scanFolder reads a certbot-style NAME/ folder; ok is false when it holds
// neither file.
func scanFolder(path string) (src source, ok bool) {
	src = source{name: filepath.Base(path), cert: filepath.Join(path, chainFile), key: filepath.Join(path, privFile)}
	hasCert, hasKey := exists(src.cert), exists(src.key)
	switch {
	case hasCert && !hasKey:
		src.err = fmt.Errorf("%s: no matching key file %s", src.cert, src.key)
	case hasKey && !hasCert:
		src.err = fmt.Errorf("%s: no matching certificate file %s", src.key, src.cert)
	}
	return src, hasCert || hasKey
}

// exists reports whether path names something, even a dangling link.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func sortSources(srcs []source) {
	slices.SortFunc(srcs, func(a, b source) int {
		return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.cert, b.cert))
	})
}

// readFile reads path, with an error that names it in one line.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file", path)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %w", path, pe.Err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

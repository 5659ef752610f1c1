package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Change is how a file in the output directory differs from what Render
// returned.
type Change struct {
	// File is the file's name inside the directory.
	File string
	// What is "differs", "missing" (Render has it, the directory not) or
	// "stale" (a generated file Render no longer writes, such as that of
	// a pool removed from warren.yaml).
	What string
}

func (c Change) String() string { return c.File + ": " + c.What }

// Diff compares dir with files, Render's output, and returns the changes in
// file order. Files in dir that do not start with Header are not Render's
// and are left out.
func Diff(dir string, files map[string][]byte) ([]Change, error) {
	var out []Change
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, Change{name, "missing"})
		case err != nil:
			return nil, err
		case !bytes.Equal(got, want):
			out = append(out, Change{name, "differs"})
		}
	}
	stale, err := staleFiles(dir, files)
	if err != nil {
		return nil, err
	}
	for _, name := range stale {
		out = append(out, Change{name, "stale"})
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.File, b.File) })
	return out, nil
}

// Write brings dir in line with files: it writes the files that differ or
// are missing and removes stale generated files, creating dir if need be.
// It returns what it changed.
func Write(dir string, files map[string][]byte) ([]Change, error) {
	changes, err := Diff(dir, files)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	for _, c := range changes {
		path := filepath.Join(dir, c.File)
		if c.What == "stale" {
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("remove stale %s: %w", path, err)
			}
			continue
		}
		if err := os.WriteFile(path, files[c.File], 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return changes, nil
}

// staleFiles lists the YAML files of dir that start with Header but are not
// in files.
func staleFiles(dir string, files map[string][]byte) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if _, ok := files[name]; ok || !e.Type().IsRegular() || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(b, []byte(Header)) {
			out = append(out, name)
		}
	}
	return out, nil
}

package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// maxTerminalArtifact bounds the artifact shown on a terminal: more than
// that belongs in a file.
const maxTerminalArtifact = 1 << 20

// jobArtifactOptions are the inputs of `warren job artifact`.
type jobArtifactOptions struct {
	ID string
	// File is where the bytes go; "" or "-" means standard output.
	File string
}

// Validate reports what is wrong with the options, if anything.
func (o *jobArtifactOptions) Validate() error {
	if err := checkJobID(o.ID); err != nil {
		return err
	}
	if o.File != "" && o.File != "-" {
		if fi, err := os.Stat(o.File); err == nil && fi.IsDir() {
			return fmt.Errorf("-O %s: is a directory; name a file", o.File)
		}
	}
	return nil
}

func (a *app) jobArtifactCmd() *cobra.Command {
	var o jobArtifactOptions
	cmd := &cobra.Command{
		Use:   "artifact ID [-O FILE]",
		Short: "Download the bytes a job produced",
		Long: `Download the output bytes a job produced beside its result (an image, say;
'warren job get' shows whether a job has them, their type and size).

With -O FILE the bytes are written to FILE (replacing it, and only once they
have all arrived) and a line says how many there were; -o json or -o yaml
print that as data. Without -O they go to standard output, for a pipe or a
redirection. On a terminal only text is shown: binary bytes (or more than
1 MiB) are refused, since they would garble it; use -O or redirect.

Exit status: 0 when the bytes were written, 1 otherwise (no such job, or a
job without an artifact: its record may have expired).`,
		Example: `  id=$(warren enqueue image.thumbnail '{"url":"https://example.com/a.jpg","width":200}')
  warren job wait "$id"
  warren job artifact "$id" -O thumb.jpg
  warren job artifact "$id" > thumb.jpg`,
		Args: exactArgs(1, "a job id, such as: warren job artifact 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d -O out.png"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			art, err := c.Artifact(cmd.Context(), o.ID)
			if client.IsNotFound(err) {
				return fmt.Errorf("job %s has no artifact (no such job, no output bytes, or its record expired)", o.ID)
			}
			if err != nil {
				return apiError(err)
			}
			defer art.Body.Close()
			if o.File == "" || o.File == "-" {
				return a.artifactToStdout(o.ID, art)
			}
			n, err := saveFile(o.File, art.Body)
			if err != nil {
				return err
			}
			if isData(format) {
				return writeData(a.out, format, map[string]any{"job": o.ID, "file": o.File, "bytes": n, "content_type": art.ContentType})
			}
			fmt.Fprintf(a.out, "%s: %s of %s\n", o.File, sizeText(n), contentType(art.ContentType))
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.File, "out-file", "O", "", "write the bytes to this file (- or none: standard output)")
	return cmd
}

// artifactToStdout writes an artifact to standard output: as it comes to a
// pipe or a file, and to a terminal only when it is text that cannot
// garble it.
func (a *app) artifactToStdout(id string, art *client.Artifact) error {
	if !isTTY(a.out) {
		_, err := io.Copy(a.out, art.Body)
		if err != nil {
			return fmt.Errorf("artifact of job %s: %w", id, err)
		}
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(art.Body, maxTerminalArtifact+1))
	if err != nil {
		return fmt.Errorf("artifact of job %s: %w", id, err)
	}
	what := contentType(art.ContentType)
	switch {
	case len(b) > maxTerminalArtifact:
		return fmt.Errorf("job %s's artifact (%s) is over 1 MiB, too much for a terminal: write it to a file with -O FILE, or redirect it", id, what)
	case !isPlainText(b):
		return fmt.Errorf("job %s's artifact is %s of binary %s, which would garble the terminal: write it to a file with -O FILE%s, or redirect it",
			id, sizeText(int64(len(b))), what, suggestedName(id, art.ContentType))
	}
	_, err = a.out.Write(b)
	if err == nil && len(b) > 0 && b[len(b)-1] != '\n' {
		_, err = io.WriteString(a.out, "\n")
	}
	return err
}

// saveFile writes r to path through a temporary file beside it, renamed
// into place once complete, so that a download cut short leaves no part
// of itself and does not destroy the file it would replace.
func saveFile(path string, r io.Reader) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".warren-artifact-*")
	if err != nil {
		return 0, fmt.Errorf("-O %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	n, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("-O %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return n, fmt.Errorf("-O %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, fmt.Errorf("-O %s: %w", path, err)
	}
	return n, nil
}

// isPlainText reports whether b is UTF-8 text a terminal shows as it is:
// no control characters but tab, line feed and carriage return, which
// could move the cursor, retitle the window or worse.
func isPlainText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

// suggestedName is " (such as ID.png)", from the media type, or "".
func suggestedName(id, ct string) string {
	mt, _, _ := mime.ParseMediaType(ct)
	known := map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp", "application/pdf": ".pdf"}
	if ext := known[mt]; ext != "" {
		return " (such as " + id + ext + ")"
	}
	return ""
}

// contentType is a media type for people: "bytes of no stated type" when
// the API gave none.
func contentType(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	return oneLine(ct)
}

// sizeText writes a byte count as people read it: "512 B", "12.3 KiB",
// "4.0 MiB".
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// artifactText is the job view's line about a job's artifact: its type,
// its size and how to get it.
func artifactText(j *jobs.Job) string {
	return fmt.Sprintf("%s, %s (warren job artifact %s -O FILE)", contentType(j.Artifact.ContentType), sizeText(int64(j.Artifact.Bytes)), j.ID)
}

// maxShownJSON is how much of a payload or result the job view shows.
const maxShownJSON = 200

// shortJSON is compactJSON cut to maxShownJSON bytes, at a rune boundary,
// saying how long the whole is: a payload of base64 image data would
// otherwise fill the terminal. -o json shows it whole.
func shortJSON(raw json.RawMessage) string {
	s := compactJSON(raw)
	if len(s) <= maxShownJSON {
		return s
	}
	cut := maxShownJSON
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%s in all; -o json shows it whole)", s[:cut], sizeText(int64(len(bytes.TrimSpace(raw)))))
}

package config

import (
	"regexp"

	"github.com/warrenhq/warren/internal/redact"
)

// secretLine matches the value of a webhook secret in a line of YAML.
var secretLine = regexp.MustCompile(`(\bsecret:\s*)\S.*`)

// redactSource hides the secrets in an error about the config file, whose
// message quotes the lines around the fault: URL passwords and webhook
// secrets.
func redactSource(msg string) string {
	return secretLine.ReplaceAllString(redact.Text(msg), "${1}"+redact.Mask)
}

package schema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// How a payload's failures read. The validator reports a tree of keyword
// failures ("'oneOf' failed, subschemas 0, 1 matched"); a sender wants a
// sentence that names the field and says what to send. explain turns the
// tree into up to maxProblems such sentences, the first naming the field
// the FieldError reports. Where a sentence needs to know what a keyword
// asked for (the alternatives of a oneOf, the type of a missing property),
// it reads the compiled schema at the failure's location.

// maxProblems bounds the sentences of one FieldError.
const maxProblems = 3

// maxListed bounds the values, fields or alternatives one sentence lists.
const maxListed = 8

// problem is one failure as a sentence about one field.
type problem struct {
	field, text string
	// unknown says field is one the schema does not take at all.
	unknown bool
}

// explain turns a validation failure into a FieldError.
func (s *Schema) explain(ve *jsonschema.ValidationError) *FieldError {
	var probs []problem
	seen := map[string]bool{}
	for _, l := range ordered(leaves(ve)) {
		for _, p := range s.problems(l) {
			if !seen[p.text] && len(probs) < maxProblems {
				seen[p.text] = true
				probs = append(probs, p)
			}
		}
	}
	if len(probs) == 0 { // never expected: a failure with no cause
		f := fieldPath(ve.InstanceLocation)
		return &FieldError{Field: f, Message: f + ": " + ve.ErrorKind.LocalizedString(printer)}
	}
	texts := make([]string, len(probs))
	for i, p := range probs {
		texts[i] = p.text
	}
	return &FieldError{Field: probs[0].field, Message: strings.Join(texts, "; "), Unknown: probs[0].unknown}
}

// leaves flattens the failures that only group others (a schema, a $ref,
// allOf) into those that say what is wrong. oneOf and anyOf stay whole:
// problems reads their alternatives.
func leaves(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	switch ve.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf, *kind.ContentSchema:
		if len(ve.Causes) == 0 {
			return []*jsonschema.ValidationError{ve}
		}
		var out []*jsonschema.ValidationError
		for _, c := range ve.Causes {
			out = append(out, leaves(c)...)
		}
		return out
	}
	return []*jsonschema.ValidationError{ve}
}

// ordered puts first the failures a sender should fix first: a field the
// schema does not know (often a misspelt one, which also makes the right
// one missing), then missing fields, then choices among forms (oneOf
// before anyOf); then by field.
func ordered(ls []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	rank := func(ve *jsonschema.ValidationError) int {
		switch ve.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			return 0
		case *kind.Required:
			return 1
		case *kind.OneOf:
			return 2
		case *kind.AnyOf:
			return 3
		}
		return 4
	}
	out := slices.Clone(ls)
	// Then by field, since the validator walks an object's members in
	// no fixed order: the same payload always reads the same.
	slices.SortStableFunc(out, func(a, b *jsonschema.ValidationError) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(strings.Join(a.InstanceLocation, "/"), strings.Join(b.InstanceLocation, "/"))
	})
	return out
}

// problems says what one failure means, as sentences.
func (s *Schema) problems(ve *jsonschema.ValidationError) []problem {
	f := fieldPath(ve.InstanceLocation)
	at := s.at(ve.SchemaURL)
	one := func(format string, args ...any) []problem {
		return []problem{{field: f, text: fmt.Sprintf(format, args...)}}
	}
	switch k := ve.ErrorKind.(type) {
	case *kind.OneOf:
		return s.choice(ve, at, true, k.Subschemas)
	case *kind.AnyOf:
		return s.choice(ve, at, false, nil)
	case *kind.Required:
		return missing(f, at, k.Missing)
	case *kind.AdditionalProperties:
		return unknownFields(f, at, k.Properties)
	case *kind.Type:
		if k.Got == "number" && slices.Contains(k.Want, "integer") {
			return one("%s must be a whole number, not one with a fraction", f)
		}
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = typePhrase(w)
		}
		return one("%s must be %s, not %s", f, orList(want), typePhrase(k.Got))
	case *kind.Enum:
		return one("%s must be %s, not %s", f, oneOf(k.Want), jsonText(k.Got))
	case *kind.Const:
		return one("%s must be %s, not %s", f, jsonText(k.Want), jsonText(k.Got))
	case *kind.Minimum:
		return one("%s must be at least %s, not %s", f, number(k.Want), number(k.Got))
	case *kind.Maximum:
		return one("%s must be at most %s, not %s", f, number(k.Want), number(k.Got))
	case *kind.ExclusiveMinimum:
		return one("%s must be greater than %s, not %s", f, number(k.Want), number(k.Got))
	case *kind.ExclusiveMaximum:
		return one("%s must be less than %s, not %s", f, number(k.Want), number(k.Got))
	case *kind.MultipleOf:
		return one("%s must be a multiple of %s, not %s", f, number(k.Want), number(k.Got))
	case *kind.MinLength:
		if k.Got == 0 {
			return one("%s must not be empty (at least %s)", f, count(k.Want, "character"))
		}
		return one("%s must be at least %s long, not %d", f, count(k.Want, "character"), k.Got)
	case *kind.MaxLength:
		return one("%s must be at most %s long, not %d", f, count(k.Want, "character"), k.Got)
	case *kind.MinItems:
		return one("%s must have at least %s, not %d", f, count(k.Want, "item"), k.Got)
	case *kind.MaxItems:
		return one("%s must have at most %s, not %d", f, count(k.Want, "item"), k.Got)
	case *kind.MinProperties:
		return one("%s must have at least %s, not %d", f, count(k.Want, "field"), k.Got)
	case *kind.MaxProperties:
		return one("%s must have at most %s, not %d", f, count(k.Want, "field"), k.Got)
	case *kind.Pattern:
		what := ""
		if at != nil && at.Description != "" {
			what = " (" + clip(at.Description) + ")"
		}
		return one("%s must match the pattern %s%s; %s does not", f, k.Want, what, jsonText(k.Got))
	case *kind.Format:
		return one("%s must be a valid %s; %s is not (%v)", f, k.Want, jsonText(k.Got), k.Err)
	case *kind.ContentEncoding:
		return one("%s must be %s-encoded text (%v)", f, k.Want, k.Err)
	case *kind.ContentMediaType:
		return one("%s must hold %s (%v)", f, k.Want, k.Err)
	case *kind.UniqueItems:
		return one("%s must not repeat an item: items %d and %d are equal", f, k.Duplicates[0], k.Duplicates[1])
	case *kind.DependentRequired:
		return one("%s: %s %s when %s is given", f, andList(k.Missing), isAre(len(k.Missing), "required"), k.Prop)
	case *kind.Dependency:
		return one("%s: %s %s when %s is given", f, andList(k.Missing), isAre(len(k.Missing), "required"), k.Prop)
	case *kind.PropertyNames:
		return one("%s: %s is not an allowed field name", f, jsonText(k.Property))
	case *kind.FalseSchema:
		return one("%s is not allowed", f)
	case *kind.Not:
		return one("%s has a form that is not allowed here", f)
	case *kind.AdditionalItems:
		return one("%s has %s too many", f, count(k.Count, "item"))
	}
	return one("%s: %s", f, ve.ErrorKind.LocalizedString(printer))
}

// missing is the sentence of a required field that is absent: the field
// itself when one is, its object when several are.
func missing(f string, at *jsonschema.Schema, names []string) []problem {
	if len(names) == 1 {
		field := f + "." + names[0]
		if d := brief(property(at, nil, names[0])); d != "" {
			return []problem{{field: field, text: fmt.Sprintf("%s is required (%s)", field, d)}}
		}
		return []problem{{field: field, text: field + " is required"}}
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fieldWith(n, property(at, nil, n))
	}
	return []problem{{field: f, text: fmt.Sprintf("%s: %s are required", f, andList(parts))}}
}

// unknownFields is the sentence of fields the schema does not allow: what
// they are, a likely meant one, or the fields it takes.
func unknownFields(f string, at *jsonschema.Schema, names []string) []problem {
	names = slices.Sorted(slices.Values(names))
	var known []string
	if at != nil {
		for n := range at.Properties {
			known = append(known, n)
		}
		slices.Sort(known)
	}
	takes := ""
	if len(known) > 0 {
		takes = fmt.Sprintf(" (%s takes %s)", f, andList(known))
	}
	if len(names) == 1 {
		field := f + "." + names[0]
		for _, k := range known {
			if strings.EqualFold(k, names[0]) || (len(k) > 3 && editDistance(k, names[0]) == 1) {
				return []problem{{field: field, text: fmt.Sprintf("%s is not a known field: did you mean %s.%s?", field, f, k), unknown: true}}
			}
		}
		return []problem{{field: field, text: fmt.Sprintf("%s is not a known field%s", field, takes), unknown: true}}
	}
	return []problem{{field: f, text: fmt.Sprintf("%s: %s are not known fields%s", f, andList(names), takes)}}
}

// alternative is one form of a oneOf or anyOf, described for a sender.
type alternative struct {
	text   string
	fields bool // described by the fields it needs, not by a value
}

// choice explains a oneOf (one) or anyOf that failed. When the sender
// plainly meant one of the forms (every other fails on the value itself,
// or on a discriminating constant), that form's own failures are the
// problems; otherwise the sentence lists the forms to choose from.
// matched are the two forms a oneOf value matched at once, if it did.
func (s *Schema) choice(ve *jsonschema.ValidationError, at *jsonschema.Schema, one bool, matched []int) []problem {
	f := fieldPath(ve.InstanceLocation)
	var alts []*jsonschema.Schema
	if at != nil {
		alts = at.AnyOf
		if one {
			alts = at.OneOf
		}
	}
	if len(matched) == 0 && len(ve.Causes) == len(alts) {
		if c, ok := meant(ve, alts); ok {
			var out []problem
			for _, l := range ordered(leaves(c)) {
				out = append(out, s.problems(l)...)
			}
			if len(out) > 0 {
				return out
			}
		}
	}
	descs := make([]alternative, len(alts))
	fields := len(alts) > 0
	for i, a := range alts {
		descs[i] = describe(a, at)
		if descs[i].text == "" {
			descs[i].text = fmt.Sprintf("alternative %d", i+1)
		}
		fields = fields && descs[i].fields
	}
	texts := make([]string, len(descs))
	for i, d := range descs {
		texts[i] = d.text
	}
	switch {
	case len(descs) == 0:
		return []problem{{field: f, text: fmt.Sprintf("%s: %s", f, ve.ErrorKind.LocalizedString(printer))}}
	case len(matched) == 2 && matched[1] < len(descs):
		a, b := texts[matched[0]], texts[matched[1]]
		if fields {
			return []problem{{field: f, text: fmt.Sprintf("%s: send either %s or %s, not both", f, a, b)}}
		}
		return []problem{{field: f, text: fmt.Sprintf("%s must be either %s or %s, and it is both", f, a, b)}}
	case one && fields:
		return []problem{{field: f, text: fmt.Sprintf("%s: send either %s", f, orList(texts))}}
	case one:
		return []problem{{field: f, text: fmt.Sprintf("%s must be either %s", f, orList(texts))}}
	case fields && len(texts) == 2:
		return []problem{{field: f, text: fmt.Sprintf("%s: send %s, %s, or both", f, texts[0], texts[1])}}
	case fields:
		return []problem{{field: f, text: fmt.Sprintf("%s: send at least one of %s", f, orList(texts))}}
	}
	return []problem{{field: f, text: fmt.Sprintf("%s must be %s", f, orList(texts))}}
}

// meant returns the one form of a failed oneOf or anyOf that the sender
// seems to have meant. A form is ruled out when the value is not of its
// type or a constant that tells the forms apart does not match; of the
// rest, the sender meant the only one whose failures all lie within the
// value (its fields, its items), or else the only one left, if the value
// matched a constant of it or its failure is not a field missing or
// unknown (which is what a choice between forms of fields looks like).
func meant(ve *jsonschema.ValidationError, alts []*jsonschema.Schema) (*jsonschema.ValidationError, bool) {
	depth := len(ve.InstanceLocation)
	var candidates, deep []int
	for i, c := range ve.Causes {
		ruledOut, within := false, true
		for _, l := range leaves(c) {
			d := len(l.InstanceLocation)
			within = within && d > depth
			switch l.ErrorKind.(type) {
			case *kind.Const, *kind.Enum:
				ruledOut = ruledOut || d <= depth+1
			case *kind.Type:
				ruledOut = ruledOut || d <= depth
			}
		}
		if ruledOut {
			continue
		}
		candidates = append(candidates, i)
		if within {
			deep = append(deep, i)
		}
	}
	switch {
	case len(deep) == 1:
		return ve.Causes[deep[0]], true
	case len(candidates) == 1:
		i := candidates[0]
		if discriminated(alts[i]) || !onlyFields(ve.Causes[i], depth) {
			return ve.Causes[i], true
		}
	}
	return nil, false
}

// onlyFields reports whether a form failed only for fields missing or
// unknown in the value itself.
func onlyFields(c *jsonschema.ValidationError, depth int) bool {
	for _, l := range leaves(c) {
		switch l.ErrorKind.(type) {
		case *kind.Required, *kind.AdditionalProperties:
			if len(l.InstanceLocation) == depth {
				continue
			}
		}
		return false
	}
	return true
}

// discriminated reports whether a form requires a field of a constant
// value, which tells it apart from the others.
func discriminated(alt *jsonschema.Schema) bool {
	alt = deref(alt)
	for _, n := range required(alt) {
		if p := deref(property(alt, nil, n)); p != nil && p.Const != nil {
			return true
		}
	}
	return false
}

// describe says briefly what one form of a choice asks for: its title; or
// the fields it requires, with what each holds (url (a string)); or the
// value it takes (a string, one of "a", "b").
func describe(alt, parent *jsonschema.Schema) alternative {
	alt = deref(alt)
	if alt == nil {
		return alternative{}
	}
	if alt.Title != "" {
		return alternative{text: alt.Title, fields: len(required(alt)) > 0}
	}
	if req := required(alt); len(req) > 0 {
		var consts, others []string
		for _, n := range req {
			p := deref(property(alt, parent, n))
			if p != nil && p.Const != nil {
				consts = append(consts, n+" "+jsonText(*p.Const))
				continue
			}
			others = append(others, fieldWith(n, p))
		}
		text := andList(others)
		if len(consts) > 0 {
			text = strings.Join(consts, " and ")
			if len(others) > 0 {
				text += " with " + andList(others)
			}
		}
		return alternative{text: text, fields: true}
	}
	if d := brief(alt); d != "" {
		return alternative{text: d}
	}
	return alternative{text: clip(alt.Description)}
}

// required returns the fields a schema requires, its own or its $ref's.
func required(s *jsonschema.Schema) []string {
	for ; s != nil; s = s.Ref {
		if len(s.Required) > 0 {
			return s.Required
		}
	}
	return nil
}

// property finds the schema of a field: in s (or what it refers to), else
// in parent, whose properties a form of its oneOf often leaves to it.
func property(s, parent *jsonschema.Schema, name string) *jsonschema.Schema {
	for _, x := range []*jsonschema.Schema{s, parent} {
		for ; x != nil; x = x.Ref {
			if p, ok := x.Properties[name]; ok {
				return p
			}
		}
	}
	return nil
}

// deref follows a schema that is only a $ref.
func deref(s *jsonschema.Schema) *jsonschema.Schema {
	for s != nil && s.Ref != nil && s.Types == nil && len(s.Required) == 0 && len(s.Properties) == 0 &&
		s.Enum == nil && s.Const == nil && s.Title == "" {
		s = s.Ref
	}
	return s
}

// fieldWith is a field's name and, in brackets, what it holds, if known.
func fieldWith(name string, p *jsonschema.Schema) string {
	if d := brief(p); d != "" {
		return name + " (" + d + ")"
	}
	return name
}

// brief says what value a schema takes, in a few words: "a string", "an
// integer from 1 to 100", `one of "a", "b"`; "" when it cannot say
// briefly.
func brief(s *jsonschema.Schema) string {
	s = deref(s)
	switch {
	case s == nil:
		return ""
	case s.Const != nil:
		return jsonText(*s.Const)
	case s.Enum != nil:
		return oneOf(s.Enum.Values)
	case s.Types == nil:
		return ""
	}
	types := s.Types.ToStrings()
	out := make([]string, 0, len(types))
	for _, t := range types {
		p := typePhrase(t)
		switch t {
		case "integer", "number":
			switch {
			case s.Minimum != nil && s.Maximum != nil:
				p += " from " + number(s.Minimum) + " to " + number(s.Maximum)
			case s.Minimum != nil:
				p += " of at least " + number(s.Minimum)
			case s.Maximum != nil:
				p += " of at most " + number(s.Maximum)
			}
		case "string":
			if s.ContentEncoding != nil {
				p = "a " + s.ContentEncoding.Name + " string"
			}
		case "array":
			items := s.Items2020
			if old, ok := s.Items.(*jsonschema.Schema); ok { // drafts before 2020-12
				items = old
			}
			if items = deref(items); items != nil && items.Types != nil && len(items.Types.ToStrings()) == 1 {
				p += " of " + plural(items.Types.ToStrings()[0])
			}
		}
		out = append(out, p)
	}
	return orList(out)
}

// at returns the compiled schema at a location the validator reports.
func (s *Schema) at(location string) *jsonschema.Schema { return s.index[location] }

// indexSchemas maps the location of every schema reachable from root to
// it, so that a failure's location leads to what its keyword asked for.
func indexSchemas(root *jsonschema.Schema) map[string]*jsonschema.Schema {
	idx := map[string]*jsonschema.Schema{}
	var walk func(s *jsonschema.Schema)
	walkAll := func(ss []*jsonschema.Schema) {
		for _, s := range ss {
			walk(s)
		}
	}
	walkAny := func(v any) {
		switch v := v.(type) {
		case *jsonschema.Schema:
			walk(v)
		case []*jsonschema.Schema:
			walkAll(v)
		}
	}
	walk = func(s *jsonschema.Schema) {
		if s == nil || idx[s.Location] != nil {
			return
		}
		idx[s.Location] = s
		walk(s.Ref)
		walk(s.RecursiveRef)
		if s.DynamicRef != nil {
			walk(s.DynamicRef.Ref)
		}
		walk(s.Not)
		walkAll(s.AllOf)
		walkAll(s.AnyOf)
		walkAll(s.OneOf)
		walk(s.If)
		walk(s.Then)
		walk(s.Else)
		walk(s.PropertyNames)
		for _, p := range s.Properties {
			walk(p)
		}
		for _, p := range s.PatternProperties {
			walk(p)
		}
		walkAny(s.AdditionalProperties)
		for _, d := range s.Dependencies {
			walkAny(d)
		}
		for _, d := range s.DependentSchemas {
			walk(d)
		}
		walk(s.UnevaluatedProperties)
		walk(s.Contains)
		walkAny(s.Items)
		walkAny(s.AdditionalItems)
		walkAll(s.PrefixItems)
		walk(s.Items2020)
		walk(s.UnevaluatedItems)
		walk(s.ContentSchema)
	}
	walk(root)
	return idx
}

// fieldPath is the path of a value in a payload, such as payload.size.width.
func fieldPath(loc []string) string {
	return strings.Join(append([]string{"payload"}, loc...), ".")
}

func typePhrase(t string) string {
	switch t {
	case "string":
		return "a string"
	case "integer":
		return "an integer"
	case "number":
		return "a number"
	case "object":
		return "an object"
	case "array":
		return "an array"
	case "boolean":
		return "true or false"
	case "null":
		return "null"
	}
	return t
}

func plural(t string) string {
	switch t {
	case "boolean":
		return "true or false values"
	case "null":
		return "nulls"
	}
	return t + "s"
}

// oneOf lists the values of an enum: `"a"`, `one of "a", "b" or "c"`.
func oneOf(vs []any) string {
	texts := make([]string, len(vs))
	for i, v := range vs {
		texts[i] = jsonText(v)
	}
	if len(texts) == 1 {
		return texts[0]
	}
	return "one of " + orList(texts)
}

// jsonText writes a value as JSON, cut short if long.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return clip(string(b))
}

// clip cuts text to about 60 bytes, at a rune boundary.
func clip(s string) string {
	const n = 60
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// number writes a schema number: whole numbers exactly, others as decimals.
func number(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func isAre(n int, adj string) string {
	if n == 1 {
		return "is " + adj
	}
	return "are " + adj
}

// orList joins "a, b or c"; andList "a, b and c"; both cut long lists.
func orList(ss []string) string  { return list(ss, "or") }
func andList(ss []string) string { return list(ss, "and") }

func list(ss []string, conj string) string {
	if len(ss) > maxListed {
		ss = append(slices.Clone(ss[:maxListed]), fmt.Sprintf("%d more", len(ss)-maxListed))
	}
	switch len(ss) {
	case 0:
		return ""
	case 1:
		return ss[0]
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " " + conj + " " + ss[len(ss)-1]
}

// editDistance is the Levenshtein distance of two short names.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

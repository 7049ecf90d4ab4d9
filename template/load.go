package template

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes one YAML template, applies the defaults and validates it.
// source names the input (usually the file path) in error messages and is
// stored in Template.Source. Every problem found is reported, joined with
// errors.Join.
func Parse(source string, data []byte) (*Template, error) {
	label := sourceLabel(source)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var raw document
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty template", label)
		}
		return nil, decodeError(label, data, err)
	}
	// A second document would be silently ignored otherwise; in a file that
	// is meant to hold one template it is almost certainly a mistake.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document (one template per file)", label)
	}
	// Conversion errors (bad durations, unencodable initialization) are
	// collected with the validation errors so the user sees them all.
	t, errs := raw.template(source)
	if err := t.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeError reports YAML errors one per line, prefixed with the source, and
// rewords the decoder's unknown-field message so it does not mention this
// package's internal types.
func decodeError(label string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %w", label, err)
	}
	steps := stepLines(data)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		var line int
		if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
			if step := steps.at(line); step != "" {
				msg = step + ": " + msg
			}
		}
		if before, rest, ok := strings.Cut(msg, ": field "); ok {
			if field, _, ok := strings.Cut(rest, " not found in type "); ok {
				msg = fmt.Sprintf("%s: unknown field %q", before, field)
			}
		}
		msg = internalTypeNames.Replace(msg)
		errs = append(errs, fmt.Errorf("%s: %s", label, msg))
	}
	return errors.Join(errs...)
}

// stepSpans records where each step of a document starts so that the
// decoder's line-numbered errors can also name the step, as validation
// errors do.
type stepSpans struct {
	starts []int    // first line of each step, ascending
	labels []string // stepLabel of each step
	end    int      // first line after the steps list, 0 if it runs to EOF
}

func stepLines(data []byte) stepSpans {
	var sp stepSpans
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return sp
	}
	root := doc.Content[0].Content // key, value, key, value, ...
	for k := 0; k+1 < len(root); k += 2 {
		if root[k].Value != "steps" || root[k+1].Kind != yaml.SequenceNode {
			continue
		}
		if k+2 < len(root) {
			sp.end = root[k+2].Line
		}
		for i, item := range root[k+1].Content {
			name := ""
			if item.Kind == yaml.MappingNode {
				for f := 0; f+1 < len(item.Content); f += 2 {
					if item.Content[f].Value == "name" {
						name = item.Content[f+1].Value
					}
				}
			}
			sp.starts = append(sp.starts, item.Line)
			sp.labels = append(sp.labels, stepLabel(i, name))
		}
	}
	return sp
}

// at returns the label of the step that contains line, or "" outside steps.
func (sp stepSpans) at(line int) string {
	if sp.end > 0 && line >= sp.end {
		return ""
	}
	found := ""
	for i, start := range sp.starts {
		if start > line {
			break
		}
		found = sp.labels[i]
	}
	return found
}

var internalTypeNames = strings.NewReplacer(
	"template.stepDocument", "step",
	"template.handlerDocument", "handler",
	"template.retryDocument", "retry",
	"template.document", "template",
)

// LoadFile reads and parses the template in path.
func LoadFile(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	return Parse(path, data)
}

// LoadDir loads every *.yaml and *.yml file directly inside dir (not
// recursively), in file-name order. It is all or nothing: if any file is
// invalid, or two files define the same namespace/name/version, it returns no
// templates and an error listing every problem. An empty directory yields no
// templates and no error; whether that is acceptable is the caller's call.
func LoadDir(dir string) ([]*Template, error) {
	entries, err := os.ReadDir(dir) // sorted by file name
	if err != nil {
		return nil, fmt.Errorf("read template directory: %w", err)
	}
	var (
		out  []*Template
		errs []error
		seen = map[string]string{} // key -> file that defined it first
	)
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		t, err := LoadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[t.Key()]; dup {
			errs = append(errs, fmt.Errorf("%s: template %s is already defined in %s", path, t.Key(), first))
			continue
		}
		seen[t.Key()] = path
		out = append(out, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

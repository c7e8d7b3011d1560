// render: a Helm chart rendered offline with the engines Helm uses (Go text/template + sprig),
// plus the functions Helm adds (include, tpl, required, toYaml, fromYaml, .Files). For the tests:
// there is no helm binary on this machine (see ../shared/reference/helm-offline.md).
//
//	render CHART_DIR RELEASE NAMESPACE [VALUES_FILE...]   -> every rendered file on stdout, "# Source:" headed
package main

import (
	"bytes"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// Files is .Files: the chart's non-template files.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }

func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func readYaml(file string) map[string]interface{} {
	data, err := ioutil.ReadFile(file)
	check(err)
	out := map[string]interface{}{}
	check(yaml.Unmarshal(data, &out))
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 4 {
		check(fmt.Errorf("usage: render CHART_DIR RELEASE NAMESPACE [VALUES_FILE...]"))
	}
	chartDir, release, namespace := os.Args[1], os.Args[2], os.Args[3]
	chart := readYaml(filepath.Join(chartDir, "Chart.yaml"))
	values := readYaml(filepath.Join(chartDir, "values.yaml"))
	for _, f := range os.Args[4:] {
		values = merge(values, readYaml(f))
	}
	name := chart["name"].(string)
	files := Files{}
	var templates []string
	check(filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		check(err)
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(chartDir, p)
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
		} else {
			data, err := ioutil.ReadFile(p)
			check(err)
			files[rel] = data
		}
		return nil
	}))
	sort.Strings(templates)

	t := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		out := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &out); err != nil {
			out["Error"] = err.Error()
		}
		return out
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf(msg)
		}
		return v, nil
	}
	funcs["include"] = func(n string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, n, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		tt, err := c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = tt.Execute(&buf, data)
		return buf.String(), err
	}
	t.Funcs(funcs).Option("missingkey=zero")
	for _, rel := range templates {
		data, err := ioutil.ReadFile(filepath.Join(chartDir, rel))
		check(err)
		_, err = t.New(path.Join(name, rel)).Parse(string(data))
		check(err)
	}
	top := map[string]interface{}{
		"Values":       values,
		"Release":      map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart":        map[string]interface{}{"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"]},
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"}},
		"Files":        files,
	}
	for _, rel := range templates {
		if strings.HasPrefix(path.Base(rel), "_") {
			continue
		}
		n := path.Join(name, rel)
		top["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(name, "templates")}
		var buf bytes.Buffer
		check(t.ExecuteTemplate(&buf, n, top))
		if strings.TrimSpace(buf.String()) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, strings.TrimRight(buf.String(), "\n"))
	}
}

package config

import (
	"strings"
	"testing"
)

// TestURITemplateMatch: templates as Envoy's uri_template library
// parses them, and the paths each matches (query and fragment left out,
// case-sensitive).
func TestURITemplateMatch(t *testing.T) {
	for _, tc := range []struct {
		tmpl     string
		match    []string
		mismatch []string
	}{
		{"/", []string{"/", "/?a=b"}, []string{"/a", ""}},
		{"/books/*", []string{"/books/1", "/books/a.b~c?x=1", "/books/%20"}, []string{"/books", "/books/", "/books/1/2", "/Books/1"}},
		{"/books/**", []string{"/books/", "/books/1", "/books/1/2/3"}, []string{"/books", "/bookshelf/1"}},
		{"/books/*/", []string{"/books/1/"}, []string{"/books/1", "/books/1/2"}},
		{"/{a}/{b=*}/x", []string{"/1/2/x"}, []string{"/1/x", "/1/2/3/x"}},
		{"/v1/{rest=**}", []string{"/v1/", "/v1/a/b"}, []string{"/v2/a"}},
		{"/{name=shelves/*}/books", []string{"/shelves/s1/books"}, []string{"/shelves/books", "/s/s1/books"}},
		{"/videos/*/{file}.m3u8", []string{"/videos/a/b.m3u8"}, []string{"/videos/a/b.mp4", "/videos/a/.m3u8"}},
		{"/**.m3u8", []string{"/a/b/c.m3u8", "/.m3u8"}, []string{"/a.mp4"}},
		{"/a.b/x(y)", []string{"/a.b/x(y)"}, []string{"/aXb/x(y)", "/a.b/xy"}},
		{"/**/end", []string{"/a/b/end", "//end"}, []string{"/a/b/end/x"}},
	} {
		tm, err := ParseURITemplate(tc.tmpl)
		if err != nil {
			t.Errorf("%q: %v", tc.tmpl, err)
			continue
		}
		for _, p := range tc.match {
			if !tm.Match(p) {
				t.Errorf("%q does not match %q", tc.tmpl, p)
			}
		}
		for _, p := range tc.mismatch {
			if tm.Match(p) {
				t.Errorf("%q matches %q", tc.tmpl, p)
			}
		}
	}
}

// TestURITemplateInvalid: what Envoy refuses, with why.
func TestURITemplateInvalid(t *testing.T) {
	for tmpl, why := range map[string]string{
		"":                         "starts with",
		"books/*":                  "starts with",
		"/a b":                     "printable",
		"/a//b":                    `invalid literal ""`,
		"/a*":                      `invalid literal "a*"`,
		"/***":                     `invalid literal suffix "*"`,
		"/{a":                      `unmatched "{"`,
		"/{1a}":                    "invalid variable name",
		"/{abcdefghijklmnopq}":     "longer than 16",
		"/{a}/{a}":                 `"a" appears twice`,
		"/{a}/{b}/{c}/{d}/{e}/{f}": "more than 5",
		"/{a=}":                    "empty match",
		"/{a=b/}":                  "empty segment",
		"/{a=*b}":                  "invalid glob",
		"/{a=b c}":                 "printable",
		"/**/*":                    `glob "*" after "**"`,
		"/**/{a}":                  `variable "a" (a "*") after "**"`,
		"/{a=**}/{b=*}":            `glob "*" after "**"`,
		"/{a}x/y":                  "literal suffix",
		"/a{b}":                    `invalid literal "a{b}"`,
	} {
		_, err := ParseURITemplate(tmpl)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: error %v, want one with %q", tmpl, err, why)
		}
	}
}

// TestURITemplateRewrite: the rewrite takes the match template's
// variables; the query is kept; a path the template does not match is
// left as it is.
func TestURITemplateRewrite(t *testing.T) {
	m, err := ParseURITemplate("/api/{version}/{resource=**}")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseURITemplateRewrite("/{resource}/v-{version}", m)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"/api/v2/users/7?x=1#f": "/users/7/v-v2?x=1#f",
		"/api/v1/":              "//v-v1",
	} {
		if got, ok := r.Rewrite(m, in); !ok || got != want {
			t.Errorf("rewrite %q = %q, %v; want %q", in, got, ok, want)
		}
	}
	if got, ok := r.Rewrite(m, "/other"); ok || got != "/other" {
		t.Errorf("rewrite of a path the template does not match = %q, %v; want it unchanged", got, ok)
	}
	for tmpl, why := range map[string]string{
		"users":      `starts with "/"`,
		"/a//b":      `"//"`,
		"/{resource": `unmatched "{"`,
		"/{9}":       "invalid variable name",
		"/{missing}": `"missing" is not one of`,
		"/a*b":       `invalid literal "/a*b"`,
	} {
		if _, err := parseURITemplateRewrite(tmpl, m); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("rewrite %q: error %v, want one with %q", tmpl, err, why)
		}
	}
}

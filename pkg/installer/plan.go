package installer

import (
	"slices"
	"sort"
)

// Conversion records a single-plugin .conf (or .json) that was turned into a
// .conflist, with the original bytes so cleanup can put it back.
type Conversion struct {
	Conf     string `json:"conf"`
	ConfList string `json:"conflist"`
	Original string `json:"original"`
}

// FileWrite is one file to write atomically; its mode (and owner) are taken
// from ModeFrom when that file exists.
type FileWrite struct {
	Name     string
	Data     []byte
	ModeFrom string
}

// Plan is what must change in the net dir. An empty plan (no writes, no
// removes) with a Primary means everything is in place.
type Plan struct {
	Primary string  // the runtime's choice today ("" = none: wait for the primary CNI)
	Target  string  // the file that holds our entry once the plan is applied
	Reasons []Drift // why the plan changes anything
	Writes  []FileWrite
	Removes []string  // applied after the writes
	Skipped []Skipped // invalid config files passed over
	// Conversions is the updated record of converted files to keep.
	Conversions []Conversion
}

// InPlace reports whether the plan has nothing to do.
func (p Plan) InPlace() bool { return p.Primary != "" && len(p.Writes) == 0 && len(p.Removes) == 0 }

// PlanInstall computes the changes that put entry last in the primary
// configuration and nowhere else. It is pure: files is the net dir's
// content, conversions what an earlier run recorded.
func PlanInstall(files []DirFile, confName string, entry []byte, conversions []Conversion) (Plan, error) {
	p := Plan{Conversions: append([]Conversion(nil), conversions...)}
	p.Primary, p.Skipped = SelectPrimary(files, confName)
	if p.Primary == "" {
		return p, nil
	}
	data := fileData(files, p.Primary)
	if isConfList(p.Primary) {
		p.Target = p.Primary
		drift, err := CheckEntry(data, entry)
		if err != nil {
			return p, err
		}
		if drift != DriftNone {
			merged, err := InsertEntry(data, entry)
			if err != nil {
				return p, err
			}
			p.Reasons = append(p.Reasons, drift)
			p.Writes = append(p.Writes, FileWrite{Name: p.Target, Data: merged, ModeFrom: p.Target})
		}
	} else {
		p.Target = convertedName(p.Primary)
		list, err := ConfToConfList(data)
		if err != nil {
			return p, err
		}
		merged, err := InsertEntry(list, entry)
		if err != nil {
			return p, err
		}
		p.Reasons = append(p.Reasons, DriftConvert)
		p.Writes = append(p.Writes, FileWrite{Name: p.Target, Data: merged, ModeFrom: p.Primary})
		p.Removes = append(p.Removes, p.Primary)
		p.Conversions = setConversion(p.Conversions, Conversion{Conf: p.Primary, ConfList: p.Target, Original: string(data)})
	}

	// Our entry must not stay in any other file: it moves with the primary.
	target := DirFile{Name: p.Target}
	for _, f := range files {
		if f.Name == p.Target {
			target = f
		}
	}
	for _, f := range sortedConfFiles(files) {
		if f.Name == p.Target || f.Name == p.Primary || sameFile(f, target) || !isConfList(f.Name) || ValidateConfig(f.Name, f.Data) != nil {
			continue
		}
		n, total, err := countEntries(f.Data)
		if err != nil || n == 0 || n == total {
			continue // not ours to judge, or nothing but our entry: leave it
		}
		writes, removes, err := undoFile(f, files, p.Conversions)
		if err != nil {
			return p, err
		}
		p.Reasons = appendReason(p.Reasons, DriftMoved)
		p.Writes = append(p.Writes, writes...)
		p.Removes = append(p.Removes, removes...)
	}
	return p, nil
}

// PlanCleanup computes the changes that remove every mesh-cni entry from the
// net dir, restoring each .conf this installer converted when the converted
// list still says what the .conf said.
func PlanCleanup(files []DirFile, conversions []Conversion) (Plan, error) {
	p := Plan{}
	var done []DirFile
	for _, f := range sortedConfFiles(files) {
		if !isConfList(f.Name) || slices.ContainsFunc(done, func(d DirFile) bool { return sameFile(d, f) }) {
			continue
		}
		done = append(done, f)
		n, total, err := countEntries(f.Data)
		if err != nil || n == 0 || n == total {
			continue
		}
		writes, removes, err := undoFile(f, files, conversions)
		if err != nil {
			return p, err
		}
		p.Writes = append(p.Writes, writes...)
		p.Removes = append(p.Removes, removes...)
	}
	return p, nil
}

// undoFile strips our entry from f; when f is a conversion of ours whose
// content is unchanged otherwise, it puts the original .conf back instead.
func undoFile(f DirFile, files []DirFile, conversions []Conversion) ([]FileWrite, []string, error) {
	stripped, _, err := RemoveEntries(f.Data)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range conversions {
		if c.ConfList != f.Name {
			continue
		}
		orig, err := ConfToConfList([]byte(c.Original))
		if err != nil || !compactEqual(orig, stripped) {
			break // someone else changed the list: keep it as a list
		}
		if hasFile(files, c.Conf) {
			// The primary CNI wrote a new .conf since; it is the truth.
			return nil, []string{f.Name}, nil
		}
		return []FileWrite{{Name: c.Conf, Data: []byte(c.Original), ModeFrom: f.Name}}, []string{f.Name}, nil
	}
	return []FileWrite{{Name: f.Name, Data: stripped, ModeFrom: f.Name}}, nil, nil
}

func setConversion(cs []Conversion, c Conversion) []Conversion {
	for i := range cs {
		if cs[i].ConfList == c.ConfList {
			cs[i] = c
			return cs
		}
	}
	return append(cs, c)
}

func appendReason(rs []Drift, r Drift) []Drift {
	for _, x := range rs {
		if x == r {
			return rs
		}
	}
	return append(rs, r)
}

func fileData(files []DirFile, name string) []byte {
	for _, f := range files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

func hasFile(files []DirFile, name string) bool {
	for _, f := range files {
		if f.Name == name {
			return true
		}
	}
	return false
}

func sortedConfFiles(files []DirFile) []DirFile {
	out := make([]DirFile, 0, len(files))
	for _, f := range files {
		if isConfName(f.Name) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

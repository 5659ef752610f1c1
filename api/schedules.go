package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/schedule"
	"github.com/warrenhq/warren/store"
)

// The schedules' endpoints (docs/schedules.md). Reading them needs the read
// scope; adding, pausing, resuming and deleting them the admin scope: a
// schedule submits jobs for ever, past the rate limits of the key that made
// it and after that key is gone. A key limited to some job types sees and
// touches only the schedules of those types.

// scheduleRequest is the body of POST /v1/schedules.
type scheduleRequest struct {
	Name     string                     `json:"name"`
	Cron     string                     `json:"cron"`
	Every    json.RawMessage            `json:"every"`
	Type     string                     `json:"type"`
	Payload  json.RawMessage            `json:"payload"`
	Metadata map[string]json.RawMessage `json:"metadata"`
	Priority json.RawMessage            `json:"priority"`
	Timezone string                     `json:"timezone"`
	Jitter   json.RawMessage            `json:"jitter"`
	Overlap  string                     `json:"overlap"`
	CatchUp  bool                       `json:"catch_up"`
}

// scheduleList is the answer of GET /v1/schedules.
type scheduleList struct {
	Schedules []schedule.View `json:"schedules"`
}

// scheduleChange is the answer of a pause or resume.
type scheduleChange struct {
	schedule.View
	// Changed says whether the call paused or resumed it (false: it was so
	// already).
	Changed bool `json:"changed"`
}

// decodeSchedule reads a schedule's definition from a request body.
func decodeSchedule(body []byte, maxDepth int) (schedule.Definition, error) {
	var req scheduleRequest
	if err := decodeBody(body, &req, maxDepth, 0); err != nil {
		return schedule.Definition{}, err
	}
	d := schedule.Definition{
		Name: req.Name, Cron: req.Cron, Type: req.Type, Payload: req.Payload, Timezone: req.Timezone,
		Overlap: schedule.Overlap(req.Overlap), CatchUp: req.CatchUp,
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		to   *jobs.Duration
	}{{"every", req.Every, &d.Every}, {"jitter", req.Jitter, &d.Jitter}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		if err := json.Unmarshal(f.raw, f.to); err != nil {
			return d, apiErr("invalid_field", f.name, "%s: %v", f.name, err)
		}
		if *f.to == 0 && f.name == "every" {
			*f.to = -1 // refused with the bounds, not taken for absent
		}
	}
	d.Priority = decodePriority(req.Priority)
	var err error
	d.Metadata, err = decodeMetadata(req.Metadata)
	return d, err
}

// scheduleError is how the API answers what the Book refused.
func scheduleError(name string, err error) error {
	var pe *producer.Error
	switch {
	case errors.As(err, &pe):
		return apiErr(pe.Code, pe.Field, "%s", pe.Message)
	case errors.Is(err, store.ErrScheduleNotFound):
		return apiErr("not_found", "", "no schedule named %q", name)
	case errors.Is(err, store.ErrScheduleExists):
		return apiErr("conflict", "name", "a schedule named %q exists; delete it first, or choose another name", name)
	case errors.Is(err, store.ErrScheduleLimit):
		return apiErr("conflict", "", "the namespace holds %d schedules, the most it may; delete one first", schedule.MaxSchedules)
	}
	return err
}

// addSchedule handles POST /v1/schedules.
func (s *Server) addSchedule(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	d, err := decodeSchedule(body, s.cfg.MaxJSONDepth)
	c := callerOf(r.Context())
	if err == nil && d.Type != "" && !c.allowsType(d.Type) {
		err = forbidType(c, "type", d.Type)
	}
	var v schedule.View
	if err == nil {
		v, err = s.schedules.Add(r.Context(), d, c.name())
	}
	if err != nil {
		writeError(w, toAPIError(s.log, scheduleError(d.Name, err)))
		return
	}
	s.audit(r, "schedule_add", "schedule", v.Name, "type", v.Type)
	w.Header().Set("Location", "/v1/schedules/"+v.Name)
	writeJSON(w, http.StatusCreated, v)
}

// listSchedules handles GET /v1/schedules.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	all, err := s.schedules.List(r.Context())
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	c := callerOf(r.Context())
	out := scheduleList{Schedules: make([]schedule.View, 0, len(all))}
	for _, v := range all {
		if c.allowsType(v.Type) {
			out.Schedules = append(out.Schedules, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// pathSchedule reads the schedule a path names, and refuses a caller
// limited to other types.
func (s *Server) pathSchedule(w http.ResponseWriter, r *http.Request) (schedule.View, bool) {
	name := r.PathValue("name")
	if !schedule.ValidName(name) {
		writeError(w, apiErr("not_found", "", "no schedule named %q", name))
		return schedule.View{}, false
	}
	v, err := s.schedules.Get(r.Context(), name)
	if err == nil {
		err = checkType(callerOf(r.Context()), v.Type)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, scheduleError(name, err)))
		return schedule.View{}, false
	}
	return v, true
}

// getSchedule handles GET /v1/schedules/{name}.
func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.pathSchedule(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

// pauseSchedule handles POST /v1/schedules/{name}/pause.
func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) {
	s.changeSchedule(w, r, "schedule_pause")
}

// resumeSchedule handles POST /v1/schedules/{name}/resume.
func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) {
	s.changeSchedule(w, r, "schedule_resume")
}

func (s *Server) changeSchedule(w http.ResponseWriter, r *http.Request, action string) {
	v, ok := s.pathSchedule(w, r)
	if !ok {
		return
	}
	var (
		changed bool
		err     error
	)
	if action == "schedule_pause" {
		v, changed, err = s.schedules.Pause(r.Context(), v.Name, callerOf(r.Context()).name())
	} else {
		v, changed, err = s.schedules.Resume(r.Context(), v.Name)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, scheduleError(v.Name, err)))
		return
	}
	if changed {
		s.audit(r, action, "schedule", v.Name)
	}
	writeJSON(w, http.StatusOK, scheduleChange{View: v, Changed: changed})
}

// deleteSchedule handles DELETE /v1/schedules/{name}; it answers with the
// schedule as it was.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	v, ok := s.pathSchedule(w, r)
	if !ok {
		return
	}
	if err := s.schedules.Delete(r.Context(), v.Name); err != nil {
		writeError(w, toAPIError(s.log, scheduleError(v.Name, err)))
		return
	}
	s.audit(r, "schedule_delete", "schedule", v.Name)
	writeJSON(w, http.StatusOK, v)
}

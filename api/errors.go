package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// Error is an API error as the client sees it: a status, a stable code, a
// message for people and, where one field is at fault, its path (such as
// "payload.url").
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// JobID names the job a unique_conflict is with.
	JobID string `json:"job_id,omitempty"`

	retryAfter int // seconds, for a 429
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes and their HTTP statuses: the one table that maps them.
var statusOf = map[string]int{
	"invalid_json":       http.StatusBadRequest,
	"invalid_encoding":   http.StatusBadRequest,
	"invalid_field":      http.StatusBadRequest,
	"unknown_field":      http.StatusBadRequest,
	"missing_field":      http.StatusBadRequest,
	"unknown_type":       http.StatusBadRequest,
	"invalid_payload":    http.StatusBadRequest,
	"invalid_id":         http.StatusBadRequest,
	"not_found":          http.StatusNotFound,
	"unauthorized":       http.StatusUnauthorized,
	"forbidden":          http.StatusForbidden,
	"forbidden_host":     http.StatusForbidden,
	"forbidden_origin":   http.StatusForbidden,
	"forbidden_csrf":     http.StatusForbidden,
	"rate_limited":       http.StatusTooManyRequests,
	"method_not_allowed": http.StatusMethodNotAllowed,
	"request_timeout":    http.StatusRequestTimeout,
	"conflict":           http.StatusConflict,
	"too_large":          http.StatusRequestEntityTooLarge,
	"unsupported_media":  http.StatusUnsupportedMediaType,
	"unavailable":        http.StatusServiceUnavailable,
	"no_route":           http.StatusServiceUnavailable,
	"internal":           http.StatusInternalServerError,

	// The same idempotency key with another type or payload.
	"idempotency_conflict": http.StatusConflict,
	// A unique key held by another job, asked with on_conflict "error".
	"unique_conflict": http.StatusConflict,
}

func apiErr(code, field, format string, args ...any) *Error {
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	return &Error{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// toAPIError turns an internal error into what the client may see; details
// of unexpected errors are logged, not returned.
func toAPIError(log *slog.Logger, err error) *Error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrUnavailable):
		log.Warn("redis unavailable", "err", err)
		return apiErr("unavailable", "", "the job store (Redis) is unavailable; nothing was accepted, try again")
	case errors.Is(err, queue.ErrUnavailable), errors.Is(err, queue.ErrNacked),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		log.Warn("broker unavailable", "err", err)
		return apiErr("unavailable", "", "the broker (RabbitMQ) is unavailable; nothing was accepted, try again")
	case errors.Is(err, store.ErrNotFound):
		return apiErr("not_found", "", "no such job")
	case errors.Is(err, store.ErrIdempotencyConflict):
		return apiErr("idempotency_conflict", "idempotency_key",
			"idempotency_key was used for a job of another type or payload within the idempotency window; use a new key for a new job")
	}
	var uc *producer.UniqueConflictError
	if errors.As(err, &uc) {
		e := apiErr("unique_conflict", "unique.key", "unique.key %q of type %s is held by job %s (%s); nothing was created",
			uc.Holder.Unique.Key, uc.Holder.Type, uc.Holder.ID, uc.Holder.Status)
		e.JobID = uc.Holder.ID
		return e
	}
	log.Error("internal error", "err", err)
	return apiErr("internal", "", "internal error")
}

type errorBody struct {
	Error *Error `json:"error"`
}

func writeError(w http.ResponseWriter, e *Error) {
	if ra := retryAfterHeader(e); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	writeJSON(w, e.Status, errorBody{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

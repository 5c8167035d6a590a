#!/usr/bin/env python3
"""Writes loratrf's Grafana dashboards (dashboards/*.json) from the panel lists below.

The JSON files are what Grafana loads (provisioning/ or Dashboards > Import); this script is
how they are edited, so that every panel has the same layout, units and datasource. After a
change run `python3 deploy/grafana/make_dashboards.py` and commit both; `--check` fails when
the JSON files differ from what the script makes (a ctest does that). Python standard library.

The queries use the metric names of docs/metrics.md and the recording rules of
deploy/prometheus/rules/recording.yml; tests/monitoring/check_queries.py checks both.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job_id="$job_id"'


def datasource_variable():
    # A datasource variable, so that an imported dashboard works with whichever Prometheus the
    # Grafana has (the provisioned one is the default).
    return {"name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "options": []}


def target(expr, legend="", ref="A", instant=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    return t


class Layout:
    """Places panels left to right on Grafana's 24-column grid, rows of equal height."""

    def __init__(self):
        self.panels, self.x, self.y, self.row_h, self.next_id = [], 0, 0, 0, 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def row(self, title):
        self.x, self.y = 0, self.y + self.row_h
        self.row_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)


def stat(title, expr, unit="none", description="", decimals=None):
    p = {"type": "stat", "title": title, "description": description, "datasource": DS,
         "targets": [target(expr, instant=True)],
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value", "graphMode": "none", "textMode": "auto"}}
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    return p


def series(title, targets, unit="none", description="", stack=False, links=None, minimum=None):
    refs = "ABCDEFGH"
    p = {"type": "timeseries", "title": title, "description": description, "datasource": DS,
         "targets": [target(e, legend, refs[n]) for n, (e, legend) in enumerate(targets)],
         "fieldConfig": {"defaults": {"unit": unit, "custom": {
             "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
             "showPoints": "never", "spanNulls": False,
             "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
             "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "desc"}}}
    if minimum is not None:
        p["fieldConfig"]["defaults"]["min"] = minimum
    if links:
        p["fieldConfig"]["defaults"]["links"] = links
    return p


def dashboard(uid, title, description, layout, variables, tags):
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "editable": True, "graphTooltip": 1, "schemaVersion": 38, "version": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "",
        "templating": {"list": variables}, "annotations": {"list": []},
        "links": [{"title": "loratrf", "type": "dashboards", "tags": ["loratrf"],
                   "asDropdown": True, "includeVars": False, "keepTime": True}],
        "panels": layout.panels,
    }


def fleet():
    L = Layout()
    L.row("Service")
    L.add(stat("Coordinator up", 'max(up{job="loratrf-coordinator"})',
               description="1 when Prometheus scrapes the coordinator"), 4, 4)
    L.add(stat("Agents up", 'sum(up{job="loratrf-agent"})',
               description="agent targets Prometheus scrapes"), 4, 4)
    L.add(stat("Workers ready", "sum(loratrf_workers_ready)",
               description="agents registered with the coordinator, lease current"), 4, 4)
    L.add(stat("Running jobs", 'sum(loratrf_jobs{state="running"})'), 4, 4)
    L.add(stat("Queued jobs", 'sum(loratrf_jobs{state="queued"})'), 4, 4)
    L.add(stat("Slots in use", "fleet:loratrf_slots_utilisation:ratio", unit="percentunit",
               description="(slots - free slots) / slots over all ready agents"), 4, 4)

    L.row("Jobs")
    L.add(series("Jobs by state", [("sum by (state) (loratrf_jobs)", "{{state}}")]), 8, 8)
    L.add(series("Jobs submitted and finished per hour", [
        ("sum(increase(loratrf_jobs_submitted_total[1h]))", "submitted"),
        ("sum by (state) (increase(loratrf_jobs_finished_total[1h]))", "finished {{state}}"),
        ("sum(increase(loratrf_idempotent_replays_total[1h]))", "idempotent replays")]), 8, 8)
    L.add(series("Restarts and lost workers per hour", [
        ("sum(increase(loratrf_job_restarts_total[1h]))", "job restarts"),
        ("sum(increase(loratrf_workers_lost_total[1h]))", "workers lost"),
        ("sum(increase(loratrf_lease_expiries_total[1h]))", "lease expiries")]), 8, 8)
    L.add(series("Queued jobs by priority", [
        ("sum by (priority) (loratrf_jobs_queued_by_priority)", "priority {{priority}}")],
        stack=True), 8, 8)
    L.add(series("Time queued", [
        ("histogram_quantile(0.5, sum by (le) (rate(loratrf_scheduling_latency_seconds_bucket[$__rate_interval])))", "p50 (jobs scheduled)"),
        ("histogram_quantile(0.95, sum by (le) (rate(loratrf_scheduling_latency_seconds_bucket[$__rate_interval])))", "p95 (jobs scheduled)"),
        ("max(loratrf_oldest_queued_job_age_seconds)", "oldest still queued")], unit="s",
        description="QUEUED to SCHEDULED for the jobs scheduled in each interval, and the age "
                    "of the longest-waiting job"), 8, 8)
    L.add(series("Job run time (p50 by final state)", [
        ("histogram_quantile(0.5, sum by (state, le) (rate(loratrf_job_run_duration_seconds_bucket[1h])))", "{{state}}")],
        unit="s", description="first RUNNING to the final state, jobs finished in the last hour"),
        8, 8)

    L.row("Capacity")
    L.add(series("Slots used and free", [
        ("sum(loratrf_slots) - sum(loratrf_slots_free)", "used"),
        ("sum(loratrf_slots_free)", "free")], stack=True, minimum=0), 8, 8)
    L.add(series("Agents", [
        ('sum(up{job="loratrf-agent"})', "targets up"),
        ('count(up{job="loratrf-agent"})', "targets"),
        ("sum(loratrf_workers_ready)", "workers ready")], minimum=0), 8, 8)
    L.add(series("Running ranks per agent", [
        ("sum by (instance) (loratrf_agent_running_ranks)", "{{instance}}"),
    ], stack=True, minimum=0), 8, 8)
    L.add(series("Tokens/s per job", [
        ("job_id:loratrf_train_tokens:rate2m", "{{job_id}}"),
        ("fleet:loratrf_train_tokens:rate2m", "fleet")],
        description="click a line for its job dashboard",
        links=[{"title": "Job ${__field.labels.job_id}",
                "url": "/d/loratrf-job/loratrf-job?var-job_id=${__field.labels.job_id}&${__url_time_range}"}]),
        12, 8)
    L.add(series("Agent targets up", [('up{job="loratrf-agent"}', "{{instance}}")],
                 description="1 up, 0 down", minimum=0), 12, 8)

    L.row("Control plane")
    L.add(series("RPCs per second by method", [
        ("sum by (method) (rate(loratrf_grpc_requests_total[$__rate_interval]))", "{{method}}")],
        unit="reqps"), 8, 8)
    L.add(series("RPC errors per second by method and code", [
        ('sum by (method, code) (rate(loratrf_grpc_requests_total{code!="OK"}[$__rate_interval]))', "{{method}} {{code}}")],
        unit="reqps", description="every code but OK (NOT_FOUND and INVALID_ARGUMENT are often "
                                  "the callers' mistakes)"), 8, 8)
    L.add(series("RPC latency p95 by method", [
        ("histogram_quantile(0.95, sum by (method, le) (rate(loratrf_grpc_request_duration_seconds_bucket[$__rate_interval])))", "{{method}}")],
        unit="s"), 8, 8)
    L.add(series("Scheduler pass and store write p95", [
        ("histogram_quantile(0.95, sum by (le) (rate(loratrf_scheduler_pass_duration_seconds_bucket[$__rate_interval])))", "scheduler pass"),
        ("histogram_quantile(0.95, sum by (le) (rate(loratrf_store_write_duration_seconds_bucket[$__rate_interval])))", "store write")],
        unit="s"), 8, 8)
    L.add(series("Open streams", [("sum by (kind) (loratrf_open_streams)", "{{kind}}")]), 8, 8)
    L.add(series("Failures per hour", [
        ("sum(increase(loratrf_store_write_failures_total[1h]))", "store writes"),
        ("sum(increase(loratrf_agent_heartbeat_failures_total[1h]))", "agent heartbeats"),
        ("sum(increase(loratrf_agent_report_failures_total[1h]))", "agent reports"),
        ("sum(increase(loratrf_agent_checkpoint_upload_failures_total[1h]))", "checkpoint uploads")]),
        8, 8)

    L.row("Storage")
    L.add(series("Checkpoints stored", [
        ("sum(loratrf_checkpoint_stored_bytes)", "bytes")], unit="bytes"), 8, 8)
    L.add(series("Checkpoint traffic", [
        ("sum(rate(loratrf_checkpoint_bytes_total[$__rate_interval]))", "received by the coordinator"),
        ("sum(rate(loratrf_agent_checkpoint_upload_bytes_total[$__rate_interval]))", "uploaded by agents"),
        ("sum(rate(loratrf_agent_checkpoint_download_bytes_total[$__rate_interval]))", "downloaded by agents")],
        unit="Bps"), 8, 8)
    L.add(series("Free disk", [
        ("instance:loratrf_data_dir_available:ratio", "data dir {{instance}}"),
        ("instance:loratrf_agent_work_dir_available:ratio", "work dir {{instance}}")],
        unit="percentunit", minimum=0), 8, 8)
    return dashboard("loratrf-fleet", "loratrf fleet",
                     "Jobs, queue, slots, agents, control plane and storage of a loratrf service",
                     L, [datasource_variable()], ["loratrf"])


def job():
    L = Layout()
    L.row("Progress")
    L.add(stat("Step", "max(loratrf_train_step{%s})" % JOB), 4, 4)
    L.add(stat("Steps in all", "max(loratrf_train_total_steps{%s})" % JOB), 4, 4)
    L.add(stat("Done", "max(loratrf_train_step{%s}) / max(loratrf_train_total_steps{%s})" % (JOB, JOB),
               unit="percentunit"), 4, 4)
    L.add(stat("Ranks", "count(loratrf_train_step{%s})" % JOB), 4, 4)
    L.add(stat("Since last step", "job_id:loratrf_train_last_step_age_seconds{%s}" % JOB, unit="s"),
          4, 4)
    L.add(stat("Throughput vs own best", "job_id:loratrf_train_throughput:ratio_to_best{%s}" % JOB,
               unit="percentunit", description="10-minute MFU (or tokens/s without MFU) over the "
                                               "best of the last day"), 4, 4)

    L.row("Learning")
    L.add(series("Loss", [
        ("avg(loratrf_train_loss{%s})" % JOB, "train"),
        ("max(loratrf_train_eval_loss{%s})" % JOB, "eval")]), 12, 9)
    L.add(series("Eval accuracy", [("max(loratrf_train_eval_accuracy{%s})" % JOB, "eval")],
                 unit="percentunit"), 12, 9)
    L.add(series("Learning rate", [("max(loratrf_train_learning_rate{%s})" % JOB, "lr")]), 12, 8)
    L.add(series("Gradient norm (before clipping)", [
        ("max(loratrf_train_grad_norm{%s})" % JOB, "grad norm")]), 12, 8)

    L.row("Throughput")
    L.add(series("Tokens/s", [
        ("job_id:loratrf_train_tokens:rate2m{%s}" % JOB, "job"),
        ("sum by (rank) (rate(loratrf_train_tokens_total{%s}[$__rate_interval]))" % JOB, "rank {{rank}}")]),
        8, 8)
    L.add(series("Samples/s", [("job_id:loratrf_train_samples:rate2m{%s}" % JOB, "job")]), 8, 8)
    L.add(series("MFU", [
        ("avg(loratrf_train_mfu_ratio{%s})" % JOB, "mean of ranks"),
        ("job_id:loratrf_train_mfu_ratio:avg10m{%s}" % JOB, "10-minute mean")],
        unit="percentunit", description="model FLOPs/s over the device's peak; GPUs whose peak "
                                        "is known only"), 8, 8)
    L.add(series("Model FLOPs/s", [
        ("sum(loratrf_train_model_flops_per_second{%s})" % JOB, "job"),
        ("sum by (rank) (loratrf_train_model_flops_per_second{%s})" % JOB, "rank {{rank}}")],
        unit="flops"), 8, 8)
    L.add(series("Step time", [
        ("job_id:loratrf_train_step_duration_seconds:p50_rate5m{%s}" % JOB, "p50"),
        ("job_id:loratrf_train_step_duration_seconds:p95_rate5m{%s}" % JOB, "p95"),
        ("job_id:loratrf_train_step_duration_seconds:mean_rate5m{%s}" % JOB, "mean")],
        unit="s"), 8, 8)
    L.add(series("Step time breakdown", [
        ("job_id:loratrf_train_data_wait:ratio_rate5m{%s}" % JOB, "waiting for data"),
        ("job_id:loratrf_train_allreduce:ratio_rate5m{%s}" % JOB, "all-reduce")],
        unit="percentunit", minimum=0,
        description="share of step time each rank spends waiting for batches and for the "
                    "gradient all-reduce (mean over ranks)"), 8, 8)

    L.row("Memory and checkpoints")
    L.add(series("Device memory", [
        ("max by (rank, kind, device) (loratrf_train_memory_bytes{%s})" % JOB,
         "rank {{rank}} {{kind}} ({{device}})")], unit="bytes",
        description="CUDA allocator on GPUs, process RSS on CPUs; in use and peak"), 12, 8)
    L.add(series("Checkpoint save and upload time (mean over the last hour)", [
        ("sum(increase(loratrf_train_checkpoint_save_duration_seconds_sum{%s}[1h])) / sum(increase(loratrf_train_checkpoint_save_duration_seconds_count{%s}[1h]))" % (JOB, JOB), "save (rank 0)"),
        ("sum(increase(loratrf_agent_checkpoint_upload_duration_seconds_sum{%s}[1h])) / sum(increase(loratrf_agent_checkpoint_upload_duration_seconds_count{%s}[1h]))" % (JOB, JOB), "upload")],
        unit="s"), 12, 8)

    variables = [datasource_variable(), {
        "name": "job_id", "label": "Job", "type": "query", "datasource": DS,
        "query": {"query": "label_values(loratrf_train_steps_total, job_id)", "refId": "jobs"},
        "definition": "label_values(loratrf_train_steps_total, job_id)",
        "refresh": 2, "sort": 1, "current": {}, "hide": 0, "includeAll": False, "multi": False,
        "options": [], "regex": ""}]
    return dashboard("loratrf-job", "loratrf job",
                     "One training job: loss and eval curves, throughput, step time, MFU, "
                     "memory, checkpoints (running jobs only: the series end with the attempt)",
                     L, variables, ["loratrf"])


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print("usage: make_dashboards.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for name, make in (("loratrf-fleet.json", fleet), ("loratrf-job.json", job)):
        path = os.path.join(HERE, "dashboards", name)
        text = json.dumps(make(), indent=2, sort_keys=True) + "\n"
        if check:
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                stale.append(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    for path in stale:
        print("FAIL: %s is not what make_dashboards.py makes; run "
              "`python3 deploy/grafana/make_dashboards.py` and commit the result" % path)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

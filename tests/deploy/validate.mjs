// Validates rendered Kubernetes manifests offline and checks loratrf's policies on them.
// Usage: node validate.mjs --repo DIR --expect cpu|gpu RENDERED.yaml
// Every object is validated against its JSON schema: the Kubernetes API's (kubernetes-models)
// or its CRD's (@kubernetes-models/prometheus-operator, @kubernetes-models/keda); a kind with no
// schema here fails. Then the policies: Pod Security `restricted` on every container, resources
// and probes everywhere, pinned image tags, the GPU/slot accounting of the workers, the labels
// Prometheus discovers pods by, and the PrometheusRule and dashboards equal to their sources.
// Prints one line per failure and exits 1 when there is any.
import fs from "node:fs";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parseAllDocuments, parse } from "yaml";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) usage();
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
function usage() {
  console.error("usage: node validate.mjs --repo DIR --expect cpu|gpu RENDERED.yaml");
  process.exit(2);
}
const repo = opt("--repo");
const expect = opt("--expect");
if (!["cpu", "gpu"].includes(expect) || args.length !== 1) usage();
const file = args[0];

const failures = [];
const fail = (obj, msg) =>
  failures.push(`${file}: ${obj ? `${obj.kind}/${obj.metadata?.name}: ` : ""}${msg}`);

// apiVersion + kind -> module exporting the model class of that name.
function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
  if (group === "keda.sh") return `@kubernetes-models/keda/${group}/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

const docs = parseAllDocuments(fs.readFileSync(file, "utf8"));
const objects = [];
for (const doc of docs) {
  if (doc.errors.length) {
    fail(null, `YAML: ${doc.errors[0].message}`);
    continue;
  }
  const obj = doc.toJS();
  if (obj) objects.push(obj);
}
if (objects.length === 0) fail(null, "no objects rendered");

for (const obj of objects) {
  let Model;
  try {
    Model = (await import(modulePath(obj.apiVersion, obj.kind)))[obj.kind];
  } catch {
    Model = undefined;
  }
  if (!Model) {
    fail(obj, `no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    fail(obj, `schema: ${e.message}`);
  }
}

const byKind = (kind) => objects.filter((o) => o.kind === kind);
const workloadKinds = ["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"];
const podSpecOf = (o) =>
  o.kind === "Pod" ? o.spec : o.kind === "CronJob" ? o.spec?.jobTemplate?.spec?.template?.spec : o.spec?.template?.spec;
const podLabelsOf = (o) => (o.kind === "Pod" ? o.metadata?.labels : o.spec?.template?.metadata?.labels) ?? {};
const longRunning = (o) => !["Job", "CronJob"].includes(o.kind);

// Namespace: Pod Security `restricted` enforced.
const namespaces = byKind("Namespace");
if (namespaces.length !== 1) fail(null, `expected one Namespace, got ${namespaces.length}`);
for (const ns of namespaces) {
  if (ns.metadata?.labels?.["pod-security.kubernetes.io/enforce"] !== "restricted")
    fail(ns, "label pod-security.kubernetes.io/enforce must be restricted");
}

const workloads = objects.filter((o) => workloadKinds.includes(o.kind));
if (workloads.length === 0) fail(null, "no workloads rendered");
const quantity = (q) => {
  // Enough of Kubernetes' quantities for comparisons of counts (GPUs) and presence.
  const m = String(q).match(/^([0-9.]+)([a-zA-Z]*)$/);
  return m ? Number(m[1]) : NaN;
};

for (const w of workloads) {
  const spec = podSpecOf(w) ?? {};
  const psc = spec.securityContext ?? {};
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) fail(w, "host namespaces are not allowed");
  for (const v of spec.volumes ?? []) if (v.hostPath) fail(w, `volume ${v.name}: hostPath is not allowed`);
  const containers = [
    ...(spec.initContainers ?? []).map((c) => [c, "init"]),
    ...(spec.containers ?? []).map((c) => [c, "main"]),
  ];
  for (const [c, role] of containers) {
    const where = `container ${c.name}`;
    const sc = c.securityContext ?? {};
    const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
    const user = sc.runAsUser ?? psc.runAsUser;
    if (nonRoot !== true) fail(w, `${where}: runAsNonRoot must be true`);
    if (user === 0) fail(w, `${where}: runAsUser must not be 0`);
    if (sc.allowPrivilegeEscalation !== false) fail(w, `${where}: allowPrivilegeEscalation must be false`);
    if (sc.privileged) fail(w, `${where}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(w, `${where}: capabilities must drop ALL`);
    for (const cap of sc.capabilities?.add ?? [])
      if (cap !== "NET_BIND_SERVICE") fail(w, `${where}: adds capability ${cap}`);
    const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp)) fail(w, `${where}: seccompProfile must be RuntimeDefault`);
    if (sc.readOnlyRootFilesystem !== true) fail(w, `${where}: readOnlyRootFilesystem must be true`);
    for (const p of c.ports ?? []) if (p.hostPort) fail(w, `${where}: hostPort ${p.hostPort}`);

    // Images: a pinned tag or a digest, never latest.
    const image = c.image ?? "";
    const last = image.split("/").pop();
    if (!image.includes("@sha256:") && !last.includes(":")) fail(w, `${where}: image ${image} has no tag`);
    if (/:latest($|@)/.test(image)) fail(w, `${where}: image ${image} uses the latest tag`);

    // Resources: requests and limits for CPU and memory.
    for (const kind of ["requests", "limits"])
      for (const r of ["cpu", "memory"])
        if (c.resources?.[kind]?.[r] === undefined) fail(w, `${where}: resources.${kind}.${r} is not set`);

    if (role === "main" && longRunning(w)) {
      for (const probe of ["livenessProbe", "readinessProbe"])
        if (!c[probe]) fail(w, `${where}: no ${probe}`);
    }
  }
}

// The two loratrf workloads, by the labels Prometheus discovers them by.
const component = (name) =>
  workloads.filter((w) => podLabelsOf(w)["app.kubernetes.io/name"] === "loratrf" &&
                          podLabelsOf(w)["app.kubernetes.io/component"] === name);
const coordinators = component("coordinator");
const agents = component("agent");
if (coordinators.length !== 1) fail(null, `expected one coordinator workload, got ${coordinators.length}`);
if (agents.length !== 1) fail(null, `expected one agent workload, got ${agents.length}`);
for (const w of [...coordinators, ...agents]) {
  const c = podSpecOf(w).containers[0];
  if (!(c.ports ?? []).some((p) => p.name === "metrics"))
    fail(w, "the container must name its metrics port `metrics` (Prometheus pod discovery)");
}
for (const w of coordinators) {
  const c = podSpecOf(w).containers[0];
  if (w.spec.replicas !== 1) fail(w, "the coordinator must have exactly one replica");
  if (!(w.spec.volumeClaimTemplates ?? []).length) fail(w, "the data dir needs a PVC");
  if (!(c.args ?? []).some((a) => a.startsWith("--auth-token-file")))
    fail(w, "the coordinator needs --auth-token-file (it refuses non-loopback addresses without)");
  const tls = (c.args ?? []).some((a) => a.startsWith("--tls-cert"));
  for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    // Kubelet gRPC probes speak plain text; with TLS they fall back to TCP.
    if (!c[probe]) fail(w, `no ${probe}`);
    else if (!tls && !c[probe].grpc) fail(w, `${probe} must be a native grpc probe`);
  }
  const pdb = byKind("PodDisruptionBudget").some((p) =>
    isDeepStrictEqual(p.spec?.selector?.matchLabels, w.spec.selector.matchLabels));
  if (!pdb) fail(w, "no PodDisruptionBudget selects the coordinator");
}
for (const w of agents) {
  const spec = podSpecOf(w);
  const c = spec.containers[0];
  const argv = c.args ?? [];
  const flag = (name) => {
    const a = argv.find((x) => x.startsWith(`${name}=`));
    return a === undefined ? undefined : a.slice(name.length + 1);
  };
  const slots = Number(flag("--slots"));
  if (!(slots >= 1)) fail(w, "the agent needs --slots=N");
  if (flag("--address") !== "$(POD_IP)") fail(w, "the agent's --address must be the pod IP ($(POD_IP))");
  const podIp = (c.env ?? []).find((e) => e.name === "POD_IP");
  if (podIp?.valueFrom?.fieldRef?.fieldPath !== "status.podIP") fail(w, "POD_IP must come from status.podIP");
  if ((spec.terminationGracePeriodSeconds ?? 30) < 60)
    fail(w, "terminationGracePeriodSeconds must leave time to stop ranks and report (>= 60)");
  const headless = byKind("Service").some((s) => s.spec?.clusterIP === "None" && s.metadata.name === w.spec.serviceName);
  if (!headless) fail(w, "the workers need a headless governing Service");
  const dshm = (spec.volumes ?? []).find((v) => v.name === (c.volumeMounts ?? []).find((m) => m.mountPath === "/dev/shm")?.name);
  if (dshm?.emptyDir?.medium !== "Memory") fail(w, "/dev/shm must be a memory-backed emptyDir");
  // Path confinement: jobs read models and data only under --allow-path roots, each a
  // read-only volume mount (or inside one), never the work dir or the tokens.
  const roots = argv.filter((a) => a.startsWith("--allow-path=")).map((a) => a.slice("--allow-path=".length));
  if (roots.length === 0) fail(w, "the agent needs --allow-path=DIR for the model and data volumes");
  const under = (p, root) => p === root || p.startsWith(root.endsWith("/") ? root : `${root}/`);
  const workDir = flag("--work-dir");
  for (const root of roots) {
    const mount = (c.volumeMounts ?? []).find((m) => under(root, m.mountPath));
    if (!mount) fail(w, `--allow-path=${root} is not on a volume mount`);
    else if (mount.readOnly !== true) fail(w, `--allow-path=${root}: its mount ${mount.mountPath} must be readOnly`);
    for (const m of c.volumeMounts ?? []) {
      const secret = (spec.volumes ?? []).find((v) => v.name === m.name)?.secret !== undefined;
      if ((secret || m.mountPath === workDir) && (under(m.mountPath, root) || under(root, m.mountPath)))
        fail(w, `--allow-path=${root} overlaps ${m.mountPath} (tokens or the work dir)`);
    }
  }
  const gpuLimit = c.resources?.limits?.["nvidia.com/gpu"];
  if (expect === "gpu") {
    if (gpuLimit === undefined) fail(w, "GPU workers need limits nvidia.com/gpu");
    else if (quantity(gpuLimit) !== slots)
      fail(w, `limits nvidia.com/gpu (${gpuLimit}) and --slots (${slots}) must be equal`);
    if (flag("--device") !== "cuda") fail(w, "GPU workers need --device=cuda");
    if (!(spec.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu"))
      fail(w, "GPU workers need the nvidia.com/gpu toleration");
    if (!Object.keys(spec.nodeSelector ?? {}).some((k) => k.startsWith("nvidia.com/gpu")))
      fail(w, "GPU workers need a nvidia.com/gpu node selector");
  } else {
    if (gpuLimit !== undefined) fail(w, "CPU workers must not request GPUs");
    if (flag("--device") !== "cpu") fail(w, "CPU workers need --device=cpu");
  }
}

// NetworkPolicy: a default deny of both directions for every pod.
const deny = byKind("NetworkPolicy").some((p) =>
  isDeepStrictEqual(p.spec?.podSelector ?? {}, {}) && !p.spec.ingress && !p.spec.egress &&
  ["Ingress", "Egress"].every((t) => (p.spec.policyTypes ?? []).includes(t)));
if (!deny) fail(null, "no default-deny NetworkPolicy");

// Collective traffic (TCPStore, Gloo, NCCL) is not encrypted: a policy must let it reach the
// agents from the agents only. Every ingress rule of a policy that selects the agents either
// admits agent pods alone, or only the metrics port.
const selects = (p, labels) => Object.entries(p.spec?.podSelector?.matchLabels ?? {})
  .every(([k, v]) => labels?.[k] === v) && !(p.spec?.podSelector?.matchExpressions ?? []).length;
for (const w of agents) {
  const labels = podLabelsOf(w);
  let collective = false;
  for (const p of byKind("NetworkPolicy").filter((p) => selects(p, labels))) {
    for (const rule of p.spec?.ingress ?? []) {
      const metricsOnly = (rule.ports ?? []).length > 0 && rule.ports.every((port) => port.port === "metrics");
      const agentsOnly = (rule.from ?? []).length > 0 && rule.from.every((f) =>
        !f.namespaceSelector && !f.ipBlock && f.podSelector &&
        Object.entries(f.podSelector.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v) &&
        Object.keys(f.podSelector.matchLabels ?? {}).includes("app.kubernetes.io/component"));
      if (agentsOnly) collective = true;
      else if (!metricsOnly) fail(p, "admits traffic to the agents from pods other than agents (collectives are not encrypted)");
    }
  }
  if (!collective) fail(w, "no NetworkPolicy admits the ranks' collective traffic from agent pods");
}

// The PrometheusRule carries exactly the groups of deploy/prometheus/rules/*.yml.
const rulesDir = path.join(repo, "deploy/prometheus/rules");
const sourceGroups = fs.readdirSync(rulesDir).filter((f) => f.endsWith(".yml")).sort()
  .flatMap((f) => parse(fs.readFileSync(path.join(rulesDir, f), "utf8")).groups);
for (const r of byKind("PrometheusRule"))
  if (!isDeepStrictEqual(r.spec?.groups, sourceGroups))
    fail(r, "spec.groups differ from deploy/prometheus/rules/*.yml (run deploy/k8s/generate.py)");

// The dashboards: one ConfigMap each, labelled for the Grafana sidecar, equal to the source.
const dashDir = path.join(repo, "deploy/grafana/dashboards");
for (const name of fs.readdirSync(dashDir).filter((f) => f.endsWith(".json"))) {
  const cm = byKind("ConfigMap").find((m) => m.data?.[name] !== undefined);
  if (!cm) fail(null, `no ConfigMap holds the dashboard ${name}`);
  else {
    if (cm.metadata.labels?.grafana_dashboard !== "1") fail(cm, "needs the label grafana_dashboard: \"1\"");
    if (cm.data[name] !== fs.readFileSync(path.join(dashDir, name), "utf8"))
      fail(cm, `${name} differs from deploy/grafana/dashboards/ (run deploy/k8s/generate.py)`);
  }
}

for (const f of failures) console.log(`FAIL: ${f}`);
console.log(`${file}: ${objects.length} objects, ${failures.length} failures`);
process.exit(failures.length ? 1 : 0);

// The workflow canvas (DESIGN.md §2): React Flow keeps the live graph in the browser and hands
// the whole graph to Python once per gesture (drag-stop, connect, delete, paste), never per
// mouse move. Python answers with a new `graph.rev` when it changed the graph itself (load,
// form, undo/redo, YAML, auto-layout); badges come in `issues` without touching the graph.
import React, { createContext, memo, useCallback, useContext, useEffect, useMemo, useRef } from "react";
import {
  ReactFlow, ReactFlowProvider, Background, Controls, MiniMap, Handle, Position,
  addEdge, useNodesState, useEdgesState, useReactFlow,
} from "@xyflow/react";
import * as Lucide from "lucide-react";
import "@xyflow/react/dist/style.css";

const DEFAULT_HANDLE = "default";
// Every node in view when a flow opens: a wide fan-out (customer_support's twelve branches)
// zooms out as far as it must instead of being cut at the edges; a small flow stays at 100 %.
const FIT = { padding: 0.06, minZoom: 0.2, maxZoom: 1 };
const GROUP_COLORS = {
  Flow: "#5b5bd6", Messages: "#2b9a66", AI: "#8e4ec6", Data: "#d6740b", Tools: "#0d74ce",
};
const CHIP_MAX = 4;
const Ctx = createContext({ issues: {}, highlight: new Set() });

const pascal = (name) => (name || "").split("-").map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join("");
function Icon({ name, size = 15, color = "white" }) {
  const C = Lucide[pascal(name)] || Lucide[pascal(name) + "Icon"] || Lucide.Box;
  return <C size={size} color={color} strokeWidth={2.2} />;
}

// Only what Python needs: ids, positions, the node fields (type/config...), edges.
const slim = (nodes, edges) => ({
  nodes: nodes.map(({ id, position, data }) => ({ id, position, data: { node: data?.node } })),
  edges: edges.map(({ source, target, sourceHandle }) => ({ source, target, sourceHandle })),
});

const Card = memo(function Card({ id, data, selected }) {
  const { issues, highlight } = useContext(Ctx);
  const issue = issues?.[id];
  const color = GROUP_COLORS[data.group] || "#60646c";
  const outs = data.outputs || [];
  const terminalEnd = data.kind === "end";
  const handles = terminalEnd ? [] : [DEFAULT_HANDLE, ...outs];
  const lit = highlight.has(id);
  const border = issue?.severity === "error" ? "#e5484d" : selected ? "#3e63dd" : lit ? "#30a46c" : "#d9d9e0";
  return (
    <div className="fd-card" data-node-id={id} data-kind={data.kind}
      data-issue={issue ? issue.severity : ""} data-lit={lit ? "1" : ""}
      style={{
        width: 220, background: "white", borderRadius: 10, border: `1.5px solid ${border}`,
        boxShadow: selected ? "0 0 0 3px rgba(62,99,221,.18), 0 4px 14px rgba(0,0,0,.08)"
          : lit ? "0 0 0 4px rgba(48,164,108,.25)" : "0 1px 3px rgba(0,0,0,.08)",
        fontFamily: "var(--default-font-family, system-ui)", position: "relative",
      }}>
      {data.input !== false && (
        <Handle type="target" position={Position.Top} style={{ background: "#8b8d98", width: 9, height: 9 }} />
      )}
      {issue && (
        <div className="fd-badge" title={issue.messages.join("\n")} data-testid="node-badge"
          style={{
            position: "absolute", top: -9, right: -9, minWidth: 20, height: 20, padding: "0 5px",
            borderRadius: 10, color: "white", fontSize: 11, fontWeight: 700, display: "flex",
            alignItems: "center", justifyContent: "center", border: "2px solid white",
            background: issue.severity === "error" ? "#e5484d" : "#f5a623",
          }}>
          {issue.messages.length}
        </div>
      )}
      <div style={{ display: "flex", alignItems: "center", gap: 9, padding: "9px 10px 4px" }}>
        <div style={{
          width: 26, height: 26, borderRadius: 7, background: color, flexShrink: 0,
          display: "flex", alignItems: "center", justifyContent: "center",
        }}><Icon name={data.icon} /></div>
        <div style={{ minWidth: 0, flex: 1 }}>
          <div className="fd-title" style={{
            fontSize: 13, fontWeight: 600, color: "#1c2024", whiteSpace: "nowrap",
            overflow: "hidden", textOverflow: "ellipsis",
          }}>{data.title}</div>
          <div style={{ fontSize: 10.5, color: "#80838d", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis" }}>
            {data.kind} · <span className="fd-id">{id}</span>
          </div>
        </div>
      </div>
      <div style={{ padding: "0 10px 8px" }}>
        <div className="fd-summary" style={{
          fontSize: 11, color: "#60646c", lineHeight: 1.35, overflow: "hidden", display: "-webkit-box",
          WebkitLineClamp: 2, WebkitBoxOrient: "vertical", wordBreak: "break-word",
        }}>{data.summary}</div>
      </div>
      {issue?.severity === "error" && (
        <div className="fd-issue" style={{
          fontSize: 10.5, color: "#ce2c31", background: "#fff7f7", borderTop: "1px solid #fdd8d8",
          padding: "4px 10px", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
        }} title={issue.messages.join("\n")}>{issue.messages[0].replace(/^[A-Z_]+: /, "")}</div>
      )}
      {handles.length === 1 && (
        <Handle type="source" id={DEFAULT_HANDLE} position={Position.Bottom}
          style={{ background: color, width: 9, height: 9 }} />
      )}
      {handles.length > 1 && handles.length <= CHIP_MAX && (
        <div style={{
          display: "flex", flexWrap: "wrap", gap: 4, padding: "6px 8px 9px",
          borderTop: "1px solid #f0f0f3", justifyContent: "center",
        }}>
          {handles.map((h) => (
            <div key={h} className="fd-out" data-output={h} title={h === DEFAULT_HANDLE ? "default path" : `output: ${h}`}
              style={{
                position: "relative", fontSize: 10, lineHeight: "15px", padding: "0 6px", borderRadius: 8,
                background: h === "error" ? "#ffefef" : h === DEFAULT_HANDLE ? "#f0f0f3" : "#eef1fd",
                color: h === "error" ? "#ce2c31" : h === DEFAULT_HANDLE ? "#60646c" : "#3a5bc7",
                whiteSpace: "nowrap",
              }}>
              <span style={{ display: "inline-block", maxWidth: 84, overflow: "hidden", textOverflow: "ellipsis", verticalAlign: "bottom" }}>
                {h === DEFAULT_HANDLE ? "next" : h}
              </span>
              <Handle type="source" id={h} position={Position.Bottom}
                style={{ background: h === "error" ? "#e5484d" : color, width: 8, height: 8, bottom: -6 }} />
            </div>
          ))}
        </div>
      )}
      {handles.length > CHIP_MAX && (
        // Many outputs (an intent router): one dot each along the bottom; the edges carry the labels.
        <div style={{ position: "relative", height: 16, borderTop: "1px solid #f0f0f3" }}>
          <div style={{ fontSize: 9.5, color: "#80838d", textAlign: "center", lineHeight: "14px" }}>
            {handles.length} outputs
          </div>
          {handles.map((h, i) => (
            <Handle key={h} type="source" id={h} position={Position.Bottom} title={h === DEFAULT_HANDLE ? "default path" : h}
              className="fd-out" data-output={h}
              style={{ left: `${((i + 0.5) / handles.length) * 100}%`, width: 8, height: 8,
                background: h === "error" ? "#e5484d" : h === DEFAULT_HANDLE ? "#8b8d98" : color }} />
          ))}
        </div>
      )}
    </div>
  );
});

const nodeTypes = { card: Card };
const isTyping = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.isContentEditable);

function uniqueId(base, taken) {
  let stem = base.replace(/[^A-Za-z0-9_]/g, "_").slice(0, 56) || "node";
  if (!taken.has(stem)) return stem;
  let i = 2;
  while (taken.has(`${stem}_${i}`)) i += 1;
  return `${stem}_${i}`;
}

function Editor({ graph, issues, highlight, readOnly, onGraphChange, onSelect, onAddNode, onUndo, onRedo, ...rest }) {
  const [nodes, setNodes, onNodesChange] = useNodesState(graph?.nodes ?? []);
  const [edges, setEdges, onEdgesChange] = useEdgesState(graph?.edges ?? []);
  const flow = useReactFlow();
  const wrapper = useRef(null);
  const latest = useRef({ nodes, edges });
  latest.current = { nodes, edges };
  const clipboard = useRef(null);
  const lastSel = useRef("");

  // Python -> canvas: only when Python changed the graph (a new revision).
  useEffect(() => {
    setNodes(graph?.nodes ?? []);
    setEdges(graph?.edges ?? []);
  }, [graph?.rev]);
  useEffect(() => {
    if (graph?.fit) requestAnimationFrame(() => flow.fitView(FIT));
  }, [graph?.rev, graph?.fit]);

  const emit = useCallback((n, e) => onGraphChange?.(slim(n, e)), [onGraphChange]);

  const onConnect = useCallback((c) => {
    if (readOnly) return;
    const handle = c.sourceHandle || DEFAULT_HANDLE;
    const edge = { ...c, sourceHandle: handle, id: `${c.source}->${c.target}:${handle}`,
      label: handle === DEFAULT_HANDLE ? undefined : handle };
    const next = addEdge(edge, latest.current.edges);
    setEdges(next);
    emit(latest.current.nodes, next);
  }, [emit, readOnly]);
  const onNodeDragStop = useCallback(() => {
    emit(latest.current.nodes, latest.current.edges);
  }, [emit]);
  const onDelete = useCallback(({ nodes: dn, edges: de }) => {
    const ids = new Set(dn.map((n) => n.id)), eids = new Set(de.map((e) => e.id));
    emit(
      latest.current.nodes.filter((n) => !ids.has(n.id)),
      latest.current.edges.filter((e) => !eids.has(e.id) && !ids.has(e.source) && !ids.has(e.target)),
    );
  }, [emit]);
  const onSelectionChange = useCallback(({ nodes: sel }) => {
    const key = sel.map((n) => n.id).sort().join(",");
    if (key === lastSel.current) return;
    lastSel.current = key;
    onSelect?.(sel.map((n) => n.id));
  }, [onSelect]);

  // A click on the node that is already selected still brings its form to the front.
  const onNodeClick = useCallback((_, node) => {
    if (lastSel.current === node.id) onSelect?.([node.id]);
  }, [onSelect]);

  // Copy/paste and duplicate work on the browser's copy of the graph; Python gets the result.
  const paste = useCallback((items) => {
    if (!items || readOnly) return;
    const { nodes: cur, edges: curEdges } = latest.current;
    const taken = new Set(cur.map((n) => n.id));
    const map = {};
    const added = items.nodes.map((n) => {
      const id = uniqueId(`${n.id}_copy`, taken);
      taken.add(id);
      map[n.id] = id;
      return { ...n, id, selected: true, position: { x: n.position.x + 40, y: n.position.y + 40 },
        data: { ...n.data } };
    });
    const addedEdges = items.edges.map((e) => ({
      ...e, id: `${map[e.source]}->${map[e.target]}:${e.sourceHandle}`, source: map[e.source], target: map[e.target],
    }));
    const nextNodes = [...cur.map((n) => ({ ...n, selected: false })), ...added];
    const nextEdges = [...curEdges, ...addedEdges];
    setNodes(nextNodes);
    setEdges(nextEdges);
    emit(nextNodes, nextEdges);
  }, [emit, readOnly]);
  const copy = useCallback(() => {
    const sel = latest.current.nodes.filter((n) => n.selected);
    if (!sel.length) return null;
    const ids = new Set(sel.map((n) => n.id));
    return { nodes: sel, edges: latest.current.edges.filter((e) => ids.has(e.source) && ids.has(e.target)) };
  }, []);

  useEffect(() => {
    const onKey = (ev) => {
      if (isTyping(ev.target) || !(ev.ctrlKey || ev.metaKey)) return;
      const k = ev.key.toLowerCase();
      if (k === "z" && !ev.shiftKey) { ev.preventDefault(); onUndo?.(); }
      else if ((k === "z" && ev.shiftKey) || k === "y") { ev.preventDefault(); onRedo?.(); }
      else if (k === "c") { const c = copy(); if (c) clipboard.current = c; }
      else if (k === "v") { ev.preventDefault(); paste(clipboard.current); }
      else if (k === "d") { ev.preventDefault(); paste(copy()); }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onUndo, onRedo, copy, paste]);

  // Palette items (plain HTML from Python) carry data-node-type; this puts it on the drag.
  useEffect(() => {
    const onStart = (ev) => {
      const item = ev.target?.closest?.("[data-node-type]");
      if (!item) return;
      ev.dataTransfer.setData("application/x-flowdesk-node", item.getAttribute("data-node-type"));
      ev.dataTransfer.effectAllowed = "copy";
    };
    document.addEventListener("dragstart", onStart);
    return () => document.removeEventListener("dragstart", onStart);
  }, []);
  const onDragOver = useCallback((ev) => { ev.preventDefault(); ev.dataTransfer.dropEffect = "copy"; }, []);
  const onDrop = useCallback((ev) => {
    ev.preventDefault();
    const type = ev.dataTransfer.getData("application/x-flowdesk-node");
    if (!type || readOnly) return;
    const p = flow.screenToFlowPosition({ x: ev.clientX, y: ev.clientY });
    onAddNode?.({ type, x: Math.round(p.x - 110), y: Math.round(p.y - 20) });
  }, [flow, onAddNode, readOnly]);

  const ctx = useMemo(() => ({ issues: issues || {}, highlight: new Set(highlight || []) }),
    [JSON.stringify(issues), JSON.stringify(highlight)]);

  return (
    <Ctx.Provider value={ctx}>
      <div ref={wrapper} style={{ width: "100%", height: "100%" }} onDragOver={onDragOver} onDrop={onDrop}
        data-rev={graph?.rev ?? 0} data-count={nodes.length}>
        <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes}
          onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
          onNodeDragStop={onNodeDragStop} onDelete={onDelete} onSelectionChange={onSelectionChange} onNodeClick={onNodeClick}
          nodesDraggable={!readOnly} nodesConnectable={!readOnly} elementsSelectable
          deleteKeyCode={readOnly ? null : ["Backspace", "Delete"]} selectionKeyCode="Shift"
          multiSelectionKeyCode={["Meta", "Control", "Shift"]} minZoom={0.1} maxZoom={2}
          defaultEdgeOptions={{ style: { strokeWidth: 1.6 } }} fitView fitViewOptions={FIT}
          onInit={() => wrapper.current?.setAttribute("data-ready", "1")}
          proOptions={{ hideAttribution: true }} {...rest}>
          <Background gap={20} size={1.2} color="#d9d9e0" />
          <Controls showInteractive={false} position="bottom-left" />
          <MiniMap pannable zoomable position="bottom-right" nodeBorderRadius={6}
            nodeColor={(n) => (issues?.[n.id]?.severity === "error" ? "#e5484d" : GROUP_COLORS[n.data?.group] || "#8b8d98")}
            style={{ width: 160, height: 110 }} />
        </ReactFlow>
      </div>
    </Ctx.Provider>
  );
}

export function FlowEditor(props) {
  return (
    <ReactFlowProvider>
      <Editor {...props} />
    </ReactFlowProvider>
  );
}

"""The human-readable evaluation report (report.html), written beside report.json, its plots and clips."""

from __future__ import annotations

from html import escape

from aurax_contracts import ArmSummary, EvalReport

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}img{max-width:100%}.yes{color:#1b7e3c;font-weight:bold}.no{color:#b00}
code{background:#f4f4f4;padding:0 3px}audio{height:28px}"""


def _arm_row(name: str, arm: ArmSummary) -> str:
    return (f"<tr><td>{name}</td><td><code>{escape(arm.model)}</code></td><td>{arm.clips}</td>"
            f"<td>{arm.authentic}</td><td>{arm.rate:.1%}</td>"
            f"<td>{arm.wilson_low:.1%} - {arm.wilson_high:.1%}</td><td>{arm.mean_score:.1f}</td></tr>")


def render_report(report: EvalReport, images: dict[str, str]) -> str:
    """`images`: caption -> relative PNG path."""
    c = report.comparison
    p = report.provenance
    val = f"{report.val_loss:.4f}" if report.val_loss is not None else "not measured"
    figures = "\n".join(f'<figure><img src="{escape(path)}" alt="{escape(caption)}">'
                        f"<figcaption>{escape(caption)}</figcaption></figure>"
                        for caption, path in images.items())
    components = list(report.clips[0].components) if report.clips else []
    rows = []
    for clip in sorted(report.clips, key=lambda x: (x.arm, -x.score)):
        verdict = '<span class="yes">yes</span>' if clip.authentic else '<span class="no">no</span>'
        parts = "".join(f"<td>{clip.components.get(n, 0.0):.2f}</td>" for n in components)
        rows.append(f"<tr><td>{clip.arm}</td><td>{escape(clip.prompt)}</td><td>{clip.seed}</td>"
                    f"<td>{clip.score:.1f}</td><td>{verdict}</td>{parts}<td>{clip.log_drum_events}</td>"
                    f'<td><audio controls preload="none" src="{escape(clip.audio)}"></audio></td></tr>')
    component_heads = "".join(f"<th>{escape(n)}</th>" for n in components)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>AURA-X evaluation: {escape(report.run_id)} ({report.point})</title>
<style>{STYLE}</style></head><body>
<h1>AURA-X evaluation: {escape(report.run_id)}, {report.point} point</h1>
<p>Epoch {report.epoch}, step {report.step}. {report.treatment.clips} clips per arm,
{report.clip_seconds:g} s each, the same prompts and seeds for both, guidance scale
{report.guidance_scale:g}; a clip is authentic when its AURA-X score is at least
{report.score_threshold:g}.</p>
<table><tr><th>arm</th><th>model</th><th>clips</th><th>authentic</th><th>rate</th><th>Wilson 95% interval</th>
<th>mean score</th></tr>
{_arm_row("treatment", report.treatment)}
{_arm_row("control", report.control)}</table>
<p>Difference (treatment - control): <b>{c.difference:+.1%}</b>;
one-sided Fisher exact p = <b>{c.p_value:.4g}</b>. Validation loss: <b>{val}</b>.</p>
<h2>Provenance</h2>
<table><tr><th>checkpoint</th><td><code>{escape(p.checkpoint_uri)}</code></td></tr>
<tr><th>checkpoint manifest sha256</th><td><code>{p.checkpoint_sha256}</code></td></tr>
<tr><th>dataset manifest sha256</th><td><code>{p.dataset_manifest_sha256}</code></td></tr>
<tr><th>code version</th><td><code>{escape(p.code_version)}</code></td></tr>
<tr><th>created</th><td>{report.created_at.isoformat()}</td></tr></table>
<h2>Figures</h2>
{figures}
<h2>Clips</h2>
<table><tr><th>arm</th><th>prompt</th><th>seed</th><th>score</th><th>authentic</th>{component_heads}
<th>log drums</th><th>audio</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""

"""The page: :func:`build_demo` lays out the three tabs, each with its events wired beside its components.

Every event's outputs are given by name (:func:`outputs`): the fields of the handler's result
(:mod:`webui.handlers`) say which component each value goes to. Every input component that a caller
can fill has a check (:mod:`webui.api_inputs`), given beside it by its tab and installed on the page,
which runs on the value as sent, before Gradio preprocesses it. The chat's conversation is session
state: the Chatbot is an output only, and ``/ask`` takes the new question alone.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from pipeline.config import LAYERS
from pipeline.intents import MAX_QUESTION_CHARS
from pipeline.reports import eval_reports
from pipeline.vectors import ALL_METHODS

from . import api_inputs, class_panel, why
from .browsing import browse_panel
from .guard import user_facing
from .handlers import ROLES, TALK_ANALOGIES, Asked, Classified, EvalView, Handlers, Picked, PickedForClassifier, Solved
from .memory import releasing_memory

CONCURRENCY_ID = "models"  # every event that runs a model or the pipeline shares this group
MODEL_CONCURRENCY = 2  # the machine's cores do the work; more parallel requests only queue inside
QUEUE_MAX_SIZE = 64
CACHE_CLEANUP = (3600, 6 * 3600)  # Gradio deletes its copies of uploads hourly, once six hours old
THEME = gr.themes.Soft()

METHOD_CHOICES = [
    ("3CosAdd: cos(d, b - a + c) (default)", "3cosadd"),
    ("3CosMul (Levy & Goldberg)", "3cosmul"),
    ("PairDirection: cos(d - c, b - a)", "pairdirection"),
    ("Baseline ONLY-C: nearest to C", "only-c"),
    ("Baseline IGNORE-A: cos(d, b + c)", "ignore-a"),
    ("Baseline ADD-OPPOSITE: cos(d, c - (b - a))", "add-opposite"),
    ("Baseline MULTIPLY: 3CosMul without A", "multiply"),
]
assert [v for _, v in METHOD_CHOICES] == list(ALL_METHODS), "METHOD_CHOICES must follow pipeline.vectors"
LAYER_CHOICES = [("pooled activations (penultimate layer)", "pooled"), ("logits (1000 ImageNet classes)", "logits"),
                 ("probabilities (softmax of the logits)", "probs")]
assert [v for _, v in LAYER_CHOICES] == list(LAYERS)

MODEL_BOUND = {"concurrency_limit": MODEL_CONCURRENCY, "concurrency_id": CONCURRENCY_ID}

Checks = dict[Any, api_inputs.Check]  # input component -> the check of what a caller sends to it


class UploadImage(gr.Image):
    """``gr.Image`` whose upload is handed to the handler as the uploaded file's path, unopened.

    Stock ``gr.Image`` opens every upload with PIL before the handler runs, so a text file named
    .jpg or a decompression bomb fails inside Gradio with PIL's own words. Here the file goes,
    untouched, to :func:`pipeline.images.load_image`, which refuses it with a clear message. (Gradio
    still accepts only files that were uploaded to it; ``is_template`` keeps the stock front end.)
    A subclass, not a patched instance: Gradio re-creates a component from its class when an event
    updates its properties.
    """

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if self.type == "filepath" and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


class ResultsGallery(gr.Gallery):
    """``gr.Gallery`` whose API schema (the JSON schema of its data model) is computed once. Gradio
    builds a new instance of an output component for every event that skips it (``gr.skip()``) and
    computes that schema again for it: 6 ms for a gallery on an idle machine, more on a busy one,
    holding the interpreter lock. A follow-up answered in words skips both answer galleries."""

    is_template = True
    _api_schema: dict | None = None

    def api_info(self) -> dict:
        if ResultsGallery._api_schema is None:
            ResultsGallery._api_schema = super().api_info()
        return ResultsGallery._api_schema


def outputs(result: type[NamedTuple], **components) -> list:
    """The components an event updates, in the order of the fields of its handler's ``result``: each
    field must be given as a keyword, and nothing else."""
    if set(components) != set(result._fields):
        raise TypeError(f"{result.__name__} names {result._fields}, got {tuple(components)}")
    return [components[name] for name in result._fields]


_STATIC_FOLDERS: set[Path] = set()  # the folders this process has given to gr.set_static_paths


def _serve_in_place(folder: Path) -> None:
    """Let Gradio serve ``folder``'s files where they are (``gr.set_static_paths``), once per process:
    Gradio keeps a list that each call extends, and checks every file it serves against all of it."""
    folder = Path(folder).resolve()
    if folder not in _STATIC_FOLDERS:
        gr.set_static_paths([folder])
        _STATIC_FOLDERS.add(folder)


def build_demo(h: Handlers) -> gr.Blocks:
    """The app's page over ``h`` (its Explorer's gallery is open). Queue on; the events that run a
    model or the pipeline share one concurrency group."""
    # Thumbnails are named by their content and never change: Gradio serves them where they are instead of
    # hashing and copying each one of the first page into its cache at every start. They are only ever shown;
    # the previews put in the slots are copied as before, since what a slot sends back must be an upload.
    _serve_in_place(h.thumbnails.folder)
    with gr.Blocks(title="Image Analogy Explainer", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        report_state = gr.State(None)
        history_state = gr.State([])  # the chat's conversation: kept here, never taken from the client
        gr.Markdown("# Image Analogy Explainer\nA is to B as C is to what? Answered over convnet activations "
                    "(**image space**), caption embeddings (**caption space**) and GloVe vectors of the labels "
                    "(**word space**), with an honest verdict on whether the answer is a real analogy or a cheat.")
        gr.Markdown(h.info_markdown(), elem_id="gallery-info")
        with gr.Tabs():
            checks = {**_analogy_tab(h, report_state, history_state),
                      **_classifier_tab(h),
                      **_evaluation_tab(h, demo)}
    api_inputs.install(demo, checks)
    # api_open=False: Gradio otherwise (anywhere but on a Space) answers POST /gradio_api/api/NAME directly,
    # past the queue, its size limit and the model-bound events' concurrency limit
    demo.queue(default_concurrency_limit=MODEL_CONCURRENCY, max_size=QUEUE_MAX_SIZE, api_open=False)
    return demo


def _analogy_tab(h: Handlers, report_state: gr.State, history_state: gr.State) -> Checks:
    settings = h.explorer.settings
    example_paths, example_labels = h.examples()
    with gr.Tab("Analogy", id="analogy"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Row():
                    slots = [UploadImage(label=f"{role}: upload, or pick from the gallery", type="filepath",
                                         sources=["upload", "clipboard"], height=200, elem_id=f"slot-{role.lower()}")
                             for role in ROLES]
                slot = gr.Radio(list(ROLES), value="A", label="A click on a gallery thumbnail fills slot",
                                info="Moves on to the next slot after each click.", elem_id="slot-selector")
                with gr.Row():
                    method = gr.Dropdown(METHOD_CHOICES, value="3cosadd", label="Method")
                    layer = gr.Radio(LAYER_CHOICES, value=settings.layer, label="Image-space layer")
                with gr.Row():
                    exclude = gr.Checkbox(value=True, label="Exclude A, B and C from the answers",
                                          info="The standard cheat; the result says what would win without it.")
                    top_k = gr.Slider(1, settings.max_top_k, value=settings.top_k, step=1,
                                      label="Answers shown (top k)")
                solve_btn = gr.Button("Solve A : B :: C : ?", variant="primary", elem_id="solve")
                if example_paths:
                    gr.Examples(example_paths, inputs=slots, label="Example triples", example_labels=example_labels)
            with gr.Column(scale=2):
                panel, browse_checks = browse_panel(h.browser, "Gallery (click a thumbnail to pick it)", columns=4,
                                                    height=460, elem_id="browse")

        # picking A, B and C: a click on a thumbnail fills the selected slot
        panel.browse.select(user_facing(h.pick), inputs=[slot, panel.browse_ids],
                            outputs=outputs(Picked, slot_a=slots[0], slot_b=slots[1], slot_c=slots[2], slot=slot),
                            api_visibility="private", concurrency_limit=None)
        for role, image in zip(ROLES, slots):  # however a slot is filled, its label says with what
            image.change(functools.partial(h.slot_label, role), inputs=image, outputs=image,
                         api_visibility="private", concurrency_limit=None, queue=False)

        _classes_box(h, method, layer, exclude, top_k)
        question_md = gr.Markdown(elem_id="question")
        with gr.Row(equal_height=False):
            with gr.Column():
                image_head = gr.HTML(elem_id="image-space-head")
                image_results = ResultsGallery(label="Image space: top answers", columns=5, height=200,
                                           object_fit="contain", elem_id="image-space")
                image_why = why.space_panel("image")
            with gr.Column():
                caption_head = gr.HTML(elem_id="caption-space-head")
                caption_results = ResultsGallery(label="Caption space: top answers", columns=5, height=200,
                                             object_fit="contain", elem_id="caption-space")
                text_md = gr.Markdown(elem_id="text-answer")
                caption_why = why.space_panel("caption")
            with gr.Column():
                word_head = gr.HTML(elem_id="word-space-head")
        agreement_md = gr.Markdown(elem_id="agreement")
        heatmaps = why.heatmap_panel()
        chat = gr.Chatbot(label="Explainer", height=560, elem_id="chat",
                          placeholder="Solve an analogy and the explanation appears here. Then ask away.")
        with gr.Row():
            question = gr.Textbox(show_label=False, scale=5, elem_id="question-box", max_length=MAX_QUESTION_CHARS,
                                  placeholder="Ask a follow-up: why? · top 10 · without exclusion · "
                                              "compare methods · help")
            ask_btn = gr.Button("Ask", scale=1)
        with gr.Accordion("Full report (JSON)", open=False):
            report_code = gr.Code(language="json", show_label=False, elem_id="report-json")

        # solving, then asking about the answer
        panels = dict(question=question_md, image_head=image_head, image_gallery=image_results,
                      caption_head=caption_head, caption_gallery=caption_results, text_answer=text_md,
                      agreement=agreement_md, word_head=word_head)
        solved = solve_btn.click(user_facing(releasing_memory(h.solve)), inputs=[*slots, method, layer, exclude, top_k],
                                 outputs=outputs(Solved, report=report_state, history=history_state, **panels,
                                                 chat=chat, report_json=report_code),
                                 api_name="analogy", **MODEL_BOUND)
        # the Chatbot is never an input: a history sent by a client could name server files
        ask_event = dict(fn=user_facing(h.ask), inputs=[question, report_state, history_state],
                         outputs=outputs(Asked, chat=chat, history=history_state, report=report_state,
                                         question_box=question, **panels, report_json=report_code, method=method,
                                         layer=layer, exclude=exclude, top_k=top_k),
                         **MODEL_BOUND)
        asked = [ask_btn.click(api_name="ask", **ask_event), question.submit(api_visibility="private", **ask_event)]
        why.wire(h.explorer, report_state, image_why, caption_why, heatmaps, [solved, *asked], **MODEL_BOUND)

        upload = api_inputs.uploaded_image
        return {slots[0]: upload, slots[1]: upload, slots[2]: upload,
                slot: functools.partial(api_inputs.choice, choices=ROLES),
                method: api_inputs.method, layer: api_inputs.layer, exclude: api_inputs.exclude,
                top_k: functools.partial(api_inputs.top_k, max_top_k=settings.max_top_k),
                question: api_inputs.question, **browse_checks}


def _classifier_tab(h: Handlers) -> Checks:
    with gr.Tab("What the classifier sees", id="classifier") as tab:
        gr.Markdown("One label per picture is ImageNet's whole view of the world. Pick or upload any image "
                    "and compare the classifier's top five labels with its caption.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                image = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"],
                                    height=300, elem_id="classifier-image")
                button = gr.Button("What does the classifier see?", variant="primary")
                # filled when a session first opens the tab (most never do)
                panel, browse_checks = browse_panel(h.browser, "Or click a gallery image", columns=5, height=300,
                                                    elem_id="classifier-browse", filled=False)
            with gr.Column(scale=2):
                labels = gr.Label(num_top_classes=5, label="Top-5 ImageNet labels", elem_id="classifier-labels")
                caption = gr.Markdown(elem_id="classifier-caption")

        tab.select(user_facing(h.browser.fill_once), inputs=[panel.filter_box, panel.browse_ids],
                   outputs=panel.outputs, api_visibility="private")
        classified = outputs(Classified, labels=labels, caption=caption)
        button.click(user_facing(releasing_memory(h.classify)), inputs=image, outputs=classified, api_name="classify", **MODEL_BOUND)
        image.upload(user_facing(releasing_memory(h.classify)), inputs=image, outputs=classified, api_visibility="private",
                     **MODEL_BOUND)
        panel.browse.select(user_facing(h.pick_for_classifier), inputs=panel.browse_ids,
                            outputs=outputs(PickedForClassifier, image=image, labels=labels, caption=caption),
                            api_visibility="private", **MODEL_BOUND)
        return {image: api_inputs.uploaded_image, **browse_checks}


def _evaluation_tab(h: Handlers, demo: gr.Blocks) -> Checks:
    with gr.Tab("Evaluation", id="evaluation"):
        with gr.Row():
            # the choices arrive when the page loads; an API caller may name any report that exists
            choice = gr.Dropdown(label="Report", choices=[], allow_custom_value=True, scale=3, elem_id="eval-choice")
            refresh = gr.Button("Refresh", scale=1)
        markdown = gr.Markdown(elem_id="eval-report")
        figures = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain")

        shown = outputs(EvalView, markdown=markdown, figures=figures)
        refresh.click(user_facing(h.eval_choices), outputs=choice, api_visibility="private")
        choice.change(user_facing(h.eval_view), inputs=choice, outputs=shown, api_name="evaluation")
        demo.load(user_facing(h.eval_choices), outputs=choice, api_visibility="private")
        demo.load(user_facing(h.eval_view), outputs=shown, api_visibility="private")

        def report_name(value, name):
            return api_inputs.report_name(value, name, names=[p.name for p in eval_reports(h.eval_dir)])

        return {choice: report_name}

def _classes_box(h: Handlers, method, layer, exclude, top_k) -> None:
    """Questions about classes (a photos/classes switch): A, B, C picked among the gallery's labels,
    answered by :func:`webui.class_panel.solve_classes` with the tab's method, layer, exclusion and k."""
    classes = class_panel.gallery_classes(h.gallery)
    if not classes:
        return
    kind = gr.Radio(["photos", "classes"], value="photos", label="Ask about", elem_id="question-kind",
                    info="classes: each of A, B, C is a label, represented by the centroid of its photos")
    with gr.Group(visible=False, elem_id="classes-box") as box:
        with gr.Row():
            pickers = [gr.Dropdown(classes, value=None, label=f"class {role}", elem_id=f"class-{role.lower()}")
                       for role in ROLES]
        solve_classes = gr.Button("Solve A : B :: C : ? for classes", elem_id="solve-classes")
        examples = class_panel.class_examples(h.gallery, TALK_ANALOGIES)
        if examples:
            gr.Examples(examples, inputs=pickers, label="The talk's class questions")
        answer = gr.HTML(elem_id="class-answer")
    kind.change(lambda k: gr.update(visible=k == "classes"), inputs=kind, outputs=box,
                api_visibility="private", queue=False)
    solve_classes.click(user_facing(functools.partial(class_panel.solve_classes, h.explorer)),
                        inputs=[*pickers, method, layer, exclude, top_k], outputs=answer, api_name="classes",
                        **MODEL_BOUND)

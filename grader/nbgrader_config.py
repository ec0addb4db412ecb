# The nbgrader configuration of a dnslab course. `dnslab grade` copies it into the course
# directory (/var/lib/dnslab/course, root only); instructors who open the course with
# nbgrader's own tools (formgrader, `nbgrader ...` in that directory) get the same settings.
c = get_config()  # noqa: F821

# Trainees never see solutions or hidden tests: the release clears both.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True

# Feedback goes to trainees: strip hidden test code from it (nbgrader keeps it by default).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# When nbgrader itself executes (plain `nbgrader autograde`), bound every cell; `dnslab grade`
# executes inside each trainee's lab instead and replays the result into nbgrader.
c.ExecutePreprocessor.timeout = 30
c.Execute.interrupt_on_timeout = True
c.Execute.allow_errors = True

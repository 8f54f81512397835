"""A Flask app whose view fails, for probing a view that Flask keeps a
reference to in ``app.view_functions``."""

from flask import Flask

app = Flask("flask_views")


@app.route("/fail")
def fail():
    raise LookupError("the view failed")

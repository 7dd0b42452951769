"""What a model says about your pictures: ``kres.cli.predict`` (see its help, or the README's
"Use a model on your pictures").

    python tools/predict.py runs/digits-resnet20 my_digits/
    python tools/predict.py runs/x/best.keras pictures/ --compare exports/x/resnet20_int8.tflite
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli.predict import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="tools/predict.py"))

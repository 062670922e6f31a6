"""The demo page's entry, which Hugging Face Spaces run: the app itself is charrnn/app.

    python app.py [--model weights | OWNER/NAME] [--device auto|cpu|cuda] [--host H] [--port P]
    (the same as `charrnn app ...`)
"""
from charrnn.app.server import main

if __name__ == "__main__":
    main()
